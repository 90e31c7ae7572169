"""A loopback Sunshine Conversations v2 notifications API: Basic auth, notification ids."""

from __future__ import annotations

import base64
import re
import secrets
from typing import Any

from .http import LoopbackServer, Recorded, Reply

_PATH = re.compile(r"/v2/apps/([0-9a-f]+)/notifications")


def sunshine_error(code: str, title: str) -> dict[str, Any]:
    return {"errors": [{"code": code, "title": title}]}


class SunshineEmulator(LoopbackServer):
    def __init__(self, app_id: str, key_id: str, key_secret: str) -> None:
        super().__init__()
        self.app_id = app_id
        self.key_id = key_id
        self.key_secret = key_secret

    def error_json(self, request: Recorded, status: int) -> Any:
        if status == 429:
            return sunshine_error("too_many_requests", "Rate limit exceeded")
        if status >= 500:
            return sunshine_error("internal_error", "Internal error")
        return sunshine_error("bad_request", "destinationId is not a valid phone number")

    def handle(self, request: Recorded) -> Reply:
        match = _PATH.fullmatch(request.path)
        if request.method != "POST" or not match:
            return Reply.json(404, sunshine_error("not_found", "Route not found"))
        expected = base64.b64encode(f"{self.key_id}:{self.key_secret}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return Reply.json(401, sunshine_error("unauthorized", "Authorization is required"))
        if match[1] != self.app_id:
            return Reply.json(404, sunshine_error("app_not_found", "App not found"))
        body = request.json()
        destination = body.get("destination") or {}
        if not destination.get("integrationId") or not destination.get("destinationId"):
            return Reply.json(400, sunshine_error("bad_request", "destination is required"))
        if (body.get("author") or {}).get("role") != "appMaker" or "message" not in body:
            return Reply.json(400, sunshine_error("bad_request", "author.role must be appMaker"))
        return Reply.json(201, {"notification": {"_id": secrets.token_hex(12)}})
