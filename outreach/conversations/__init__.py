"""Conversations: what an inbound event does (``inbox``), reading ingest files into events
(``ingest``), and what agents do with conversations (``agents``)."""
