"""Signed, URL-safe unsubscribe tokens (``/unsubscribe/TOKEN``, RFC 8058).

A token names a customer and a channel and carries an HMAC-SHA256 tag made with the
workspace's secret key (``store.meta.signing_key``), so that nobody can unsubscribe someone
else by editing a link. It needs no database row: the link in a message sent a year ago still
works, and the same customer and channel always give the same token. The tag is truncated to
128 bits, which keeps SMS links short and is still far beyond guessing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from .errors import SignatureError

_TAG_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _tag(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, b"unsubscribe:" + payload, hashlib.sha256).digest()[:_TAG_BYTES]


def make_unsubscribe_token(key: bytes, customer_id: str, channel: str) -> str:
    """A token for ``customer_id`` on ``channel``, signed with ``key``."""
    payload = json.dumps([customer_id, channel], separators=(",", ":"), ensure_ascii=False)
    raw = payload.encode("utf-8")
    return f"{_b64(raw)}.{_b64(_tag(key, raw))}"


def read_unsubscribe_token(key: bytes, token: str) -> tuple[str, str]:
    """(customer_id, channel) from a token; SignatureError when it was altered or is junk."""
    invalid = SignatureError("this unsubscribe link is invalid or was altered", 403)
    if len(token) > 2048 or token.count(".") != 1:
        raise invalid
    body, tag = token.split(".")
    try:
        raw, given = _unb64(body), _unb64(tag)
    except (ValueError, TypeError):
        raise invalid from None
    if not hmac.compare_digest(given, _tag(key, raw)):
        raise invalid
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise invalid from None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, str) and v for v in value)
    ):
        raise invalid
    return value[0], value[1]


REPLY_CHANNEL = "reply"  # the pseudo-channel under which reply tokens are kept in addresses


def make_reply_token(key: bytes, customer_id: str) -> str:
    """A short, lower-case token for a Reply-To plus-address (``replies+TOKEN@domain``).

    Mail servers may lower-case local parts and cap them at 64 characters, so this is not
    a signed payload but 16 base32 characters of an HMAC, looked up in the store's
    ``addresses`` table (``sending`` records it with each email it sends).
    """
    tag = hmac.new(key, b"reply:" + customer_id.encode("utf-8"), hashlib.sha256).digest()[:10]
    return base64.b32encode(tag).decode("ascii").lower()
