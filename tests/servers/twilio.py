"""A loopback Twilio Messages API: checks Basic auth, answers 201 with ``SM…`` sids."""

from __future__ import annotations

import base64
import re
import secrets
from typing import Any

from .http import LoopbackServer, Recorded, Reply

_PATH = re.compile(r"/2010-04-01/Accounts/(AC[0-9a-f]{32})/Messages\.json")
_NUMBER = re.compile(r"(whatsapp:)?\+[1-9]\d{6,14}")


def _error(code: int, message: str, status: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class TwilioEmulator(LoopbackServer):
    def __init__(self, account_sid: str, auth_token: str) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token

    def error_json(self, request: Recorded, status: int) -> Any:
        if status == 429:
            return _error(20429, "Too Many Requests", 429)
        if status >= 500:
            return _error(20500, "An internal server error has occurred", status)
        return _error(21211, "The 'To' number +3100 is not a valid phone number.", 400)

    def handle(self, request: Recorded) -> Reply:
        match = _PATH.fullmatch(request.path)
        if request.method != "POST" or not match:
            return Reply.json(404, _error(20404, "The requested resource was not found", 404))
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}" or (
            match[1] != self.account_sid
        ):
            return Reply.json(401, _error(20003, "Authenticate", 401))
        if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return Reply.json(400, _error(20001, "Unsupported content type", 400))
        form = request.form()
        if not form.get("Body"):
            return Reply.json(400, _error(21602, "Message body is required.", 400))
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return Reply.json(400, _error(21603, "A 'From' phone number is required.", 400))
        if not _NUMBER.fullmatch(form.get("To", "")):
            return Reply.json(
                400, _error(21211, f"The 'To' number {form.get('To')} is not valid.", 400)
            )
        sid = "SM" + secrets.token_hex(16)
        return Reply.json(
            201,
            {
                "sid": sid,
                "account_sid": self.account_sid,
                "status": "queued",
                "to": form["To"],
                "from": form.get("From"),
                "messaging_service_sid": form.get("MessagingServiceSid"),
                "body": form["Body"],
                "num_segments": "1",
                "error_code": None,
                "error_message": None,
                "date_created": "Wed, 25 Nov 2026 10:00:00 +0000",
                "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            },
        )
