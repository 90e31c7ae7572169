"""A loopback Meta WhatsApp Cloud API: Bearer auth, answers ``wamid.…`` ids."""

from __future__ import annotations

import base64
import re
import secrets
from typing import Any

from .http import LoopbackServer, Recorded, Reply

_PATH = re.compile(r"/(v\d+\.\d+)/(\d+)/messages")


def meta_error(code: int, message: str, kind: str = "OAuthException") -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": kind,
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": message},
            "fbtrace_id": "AbCdEf123",
        }
    }


class MetaEmulator(LoopbackServer):
    def __init__(self, phone_number_id: str, access_token: str) -> None:
        super().__init__()
        self.phone_number_id = phone_number_id
        self.access_token = access_token
        # numbers whose 24-hour window Meta considers closed (answers 131047 to free text)
        self.closed_windows: set[str] = set()

    def error_json(self, request: Recorded, status: int) -> Any:
        if status == 429:
            return meta_error(130429, "Rate limit hit", "OAuthException")
        if status >= 500:
            return meta_error(131000, "Something went wrong", "OAuthException")
        return meta_error(131026, "Message undeliverable", "OAuthException")

    def handle(self, request: Recorded) -> Reply:
        match = _PATH.fullmatch(request.path)
        if request.method != "POST" or not match or match[2] != self.phone_number_id:
            return Reply.json(
                400, meta_error(100, "Unsupported post request", "GraphMethodException")
            )
        if request.headers.get("authorization") != f"Bearer {self.access_token}":
            return Reply.json(401, meta_error(190, "Invalid OAuth access token"))
        body = request.json()
        to = str(body.get("to", ""))
        if body.get("messaging_product") != "whatsapp" or not to.isdigit():
            return Reply.json(400, meta_error(100, "Invalid parameter"))
        if body.get("type") == "text" and to in self.closed_windows:
            return Reply.json(400, meta_error(131047, "Re-engagement message", "OAuthException"))
        if body.get("type") not in ("text", "template"):
            return Reply.json(400, meta_error(100, "Invalid parameter"))
        wamid = "wamid." + base64.b64encode(b"HBgL" + secrets.token_bytes(24)).decode()
        return Reply.json(
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to}],
                "messages": [{"id": wamid}],
            },
        )
