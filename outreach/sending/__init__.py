"""Sending: the pure per-delivery decision (``decide``), the claim/record engine with its
retries, backoff and circuit (``engine``), and helper processes that send local channels
from more than one core (``helpers``)."""
