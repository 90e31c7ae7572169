"""A loopback receiver for the ``webhook`` provider: records signed POSTs, answers 2xx."""

from __future__ import annotations

from typing import Any

from .http import LoopbackServer, Recorded, Reply


class WebhookReceiver(LoopbackServer):
    def error_json(self, request: Recorded, status: int) -> Any:
        if status == 429 or status >= 500:
            return {"error": "try again later"}
        return {"error": {"code": "invalid_customer", "message": "unknown customer"}}

    def handle(self, request: Recorded) -> Reply:
        if request.method != "POST" or request.path != "/hooks/outreach":
            return Reply.json(404, {"error": "not found"})
        return Reply(204)
