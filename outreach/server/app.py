"""``outreach serve``: a small Starlette app, thin over ``conversations.inbox``.

Routes: ``POST /webhooks/CHANNEL`` (inbound messages and delivery statuses, verified by the
channel's provider before anything is parsed or stored), ``GET /webhooks/CHANNEL`` (the
provider's subscription handshake, Meta's ``hub.challenge``), ``GET|POST /unsubscribe/TOKEN``
(a confirmation page, and the RFC 8058 one-click POST) and ``GET /healthz``. Storing and
the replies webhooks cause are ``writer``'s.

Signatures are checked against the URL the provider called: ``[server] public_url`` + path
(+ query) when set (behind a proxy or tunnel), else the request's own URL.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import os
import signal
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from .. import consent
from ..channels import build_provider
from ..channels.base import Provider, ProviderContext, WebhookRequest, WebhookResponse
from ..errors import ConfigError, NotFoundError, OutreachError, SignatureError
from ..mail.poll import MailPoller
from ..phrases import language, phrase
from ..tokens import read_unsubscribe_token
from ..workspace import Workspace
from .writer import Database, InboundWriter, ReplySender

MAX_BODY_BYTES = 1024 * 1024
MAX_FORM_BYTES = 64 * 1024
BODY_SECONDS = 10.0  # the whole body, once the headers are in
HEADER_SECONDS = 10.0  # from the connection (or the last response) to a request's headers
KEEP_ALIVE_SECONDS = 5  # an idle keep-alive connection (uvicorn's timeout_keep_alive)
SHUTDOWN_SEND_SECONDS = 15.0
log = logging.getLogger("outreach.serve")


class BodyTooLarge(Exception):
    """The request body is over the limit."""


class _Server:
    """The app's state: the database and its writer, providers, the reply sender."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.config = ws.config
        self.db = Database(ws.config)
        self.writer = InboundWriter(self.db)
        self.replies = ReplySender(ws.config)
        self._providers: dict[str, Provider] = {}
        self._key: bytes | None = None

    def signing_key(self) -> bytes:
        with self.db.lock:
            if self._key is None:
                store = self.db.store()
                self._key = store.when_unlocked(store.meta.signing_key)
            return self._key

    def customer_locale(self, customer_id: str) -> str | None:
        """The customer's locale, for the unsubscribe page's language (None: unknown)."""
        with self.db.lock:
            found = self.db.store().customers.get_customers([customer_id]).get(customer_id)
        locale = found.get("locale") if found else None
        return locale if isinstance(locale, str) else None

    def unsubscribe(self, customer_id: str, channel: str, evidence: str) -> bool:
        """Record the opt-out; False when the customer already was opted out there."""
        with self.db.lock:
            store = self.db.store()

            def once() -> bool:
                with store.write():
                    # a mail provider's retry may reach another replica at the same moment:
                    # held, the second reads the first's opt-out and adds none
                    store.conversations.hold_customers([customer_id])
                    if store.consent.current_consent_for(customer_id, channel) == consent.OPTED_OUT:
                        return False
                    consent.record(
                        store,
                        self.config,
                        [customer_id],
                        channel,
                        consent.OPTED_OUT,
                        source="unsubscribe-link",
                        evidence=evidence,
                    )
                    return True

            return store.when_unlocked(once)

    # -- providers ----------------------------------------------------------------------------

    def provider(self, channel: str) -> Provider:
        provider = self._providers.get(channel)
        if provider is None:
            context = ProviderContext.of(self.config, os.environ)
            provider = build_provider(self.config.channel(channel), context)
            self._providers[channel] = provider
        return provider

    async def aclose_providers(self) -> None:
        for provider in self._providers.values():
            try:
                await provider.aclose()
            except Exception:  # closing must not hide the shutdown
                log.exception("closing a provider failed")
        self._providers.clear()


def create_app(ws: Workspace) -> Starlette:
    """The ASGI app of ``outreach serve`` for one workspace."""
    server = _Server(ws)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        server.writer.pending = asyncio.Queue()
        server.replies.start()
        writer = asyncio.create_task(server.writer.write_forever())
        try:
            yield
        finally:
            writer.cancel()
            with suppress(asyncio.CancelledError):
                await writer
            await run_in_threadpool(server.replies.stop, SHUTDOWN_SEND_SECONDS)
            await server.aclose_providers()
            await run_in_threadpool(server.db.close)

    async def webhook(request: Request) -> Response:
        channel = request.path_params["channel"]
        if channel not in server.config.channels:
            return PlainTextResponse(f"no channel {channel}", status_code=404)
        try:
            provider = server.provider(channel)
        except ConfigError as exc:
            log.error("webhook for %s: %s", channel, exc)
            return PlainTextResponse(f"channel {channel} is not ready", status_code=503)
        if request.method in ("GET", "HEAD"):
            # HEAD is GET without the body (never a POST, whatever it carries)
            return _handshake(provider, _webhook_request(server, request, b""))
        try:
            body = await _read_body(request, MAX_BODY_BYTES)
        except BodyTooLarge:
            return PlainTextResponse("request body is too large", status_code=413)
        except ValueError:
            return PlainTextResponse("bad Content-Length", status_code=400)
        except ClientDisconnect:
            return _gone()
        webhook_request = _webhook_request(server, request, body)
        try:
            provider.verify(webhook_request)
        except SignatureError as exc:
            log.warning("webhook for %s refused: %s", channel, exc)
            return PlainTextResponse(str(exc), status_code=exc.status)
        try:
            events = provider.parse(webhook_request)
        except (OutreachError, ValueError, KeyError, TypeError, AttributeError) as exc:
            return PlainTextResponse(f"cannot read this payload ({exc})", status_code=400)
        except RecursionError:
            return PlainTextResponse(
                "cannot read this payload (nested too deeply)", status_code=400
            )
        if not events:
            problem = _payload_problem(body)
            if problem:
                return PlainTextResponse(problem, status_code=400)
        try:
            summary = await server.writer.submit(events)
        except (sqlite3.Error, OutreachError) as exc:
            # busy beyond the timeout, damaged, a full disk: 503, so the provider retries
            return await _unavailable(server, exc, f"webhook for {channel} not stored")
        server.replies.queue(summary.replies_queued)
        if summary.rejected and not (
            summary.stored or summary.duplicates or summary.status_updates or summary.status_ignored
        ):
            reasons = "; ".join(reason for _, reason in summary.rejected)
            return PlainTextResponse(f"rejected: {reasons}", status_code=400)
        return _answer(
            provider.webhook_response(
                {
                    "messages": summary.messages,
                    "stored": summary.stored,
                    "duplicates": summary.duplicates,
                    "status_updates": summary.status_updates,
                    "rejected": len(summary.rejected),
                }
            )
        )

    async def unsubscribe(request: Request) -> Response:
        token = request.path_params["token"]
        try:
            key = await run_in_threadpool(server.signing_key)
        except (sqlite3.Error, OutreachError) as exc:
            return await _unavailable(server, exc, "unsubscribe page")
        try:
            customer_id, channel = read_unsubscribe_token(key, token)
        except SignatureError:
            return _page(
                "Invalid link",
                "This unsubscribe link is not valid. Copy the whole "
                "link from the message, or reply STOP to it.",
                404,
            )
        if channel not in server.config.channels:
            return _page("Unknown channel", "These messages are no longer sent.", 410)
        try:
            locale = await run_in_threadpool(server.customer_locale, customer_id)
        except (sqlite3.Error, OutreachError) as exc:
            return await _unavailable(server, exc, "unsubscribe page")
        if request.method in ("GET", "HEAD"):
            # HEAD is GET without the body: a link checker never unsubscribes anyone
            return _confirm_page(request.url.path, channel, locale)
        try:
            body = await _read_body(request, MAX_FORM_BYTES)
        except (BodyTooLarge, ValueError):
            return PlainTextResponse("request body is too large", status_code=413)
        except ClientDisconnect:
            return _gone()
        form = _form_fields(body, request.headers.get("content-type", ""))
        if form.get("List-Unsubscribe") != ["One-Click"]:
            return _page(
                phrase("not_unsubscribed_title", locale),
                phrase("not_unsubscribed_text", locale),
                400,
                locale,
            )
        try:
            await run_in_threadpool(
                server.unsubscribe, customer_id, channel, f"one-click POST {request.url.path}"
            )
        except NotFoundError:
            return _page("Invalid link", "This unsubscribe link is not valid.", 404)
        except (sqlite3.Error, OutreachError) as exc:
            return await _unavailable(server, exc, "unsubscribe not recorded")
        return _page(
            phrase("unsubscribed_title", locale),
            phrase("unsubscribed_text", locale, sender=server.config.sender_name, channel=channel),
            200,
            locale,
        )

    async def healthz(request: Request) -> Response:
        try:
            await run_in_threadpool(server.db.healthy)
        except (sqlite3.Error, OutreachError) as exc:
            known = await run_in_threadpool(server.db.fault, exc)
            text = " ".join(str(known or exc).split())
            return JSONResponse({"status": "error", "error": text}, status_code=503)
        return JSONResponse({"status": "ok"})

    routes = [
        Route("/webhooks/{channel}", webhook, methods=["GET", "POST"]),
        Route("/unsubscribe/{token}", unsubscribe, methods=["GET", "POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused (BodyTooLarge) past ``limit`` by its Content-Length or, when that is
    absent or lies, by counting while reading. A body that has not all come in BODY_SECONDS
    is answered 408 by the connection (``deadlines``), and reading it ends in
    ClientDisconnect."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise ValueError("bad Content-Length")
        if int(length) > limit:
            raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _gone() -> Response:
    """For a client that hung up mid-body: nobody reads it, but the app ends cleanly."""
    return PlainTextResponse("client disconnected", status_code=400)


async def _unavailable(server: _Server, exc: BaseException, what: str) -> Response:
    """503 for a database that cannot take the request now: busy beyond the timeout,
    damaged (also reported by /healthz) or on a full disk; one log line, no traceback."""
    known = await run_in_threadpool(server.db.fault, exc)
    text = " ".join(str(known or exc).split())
    log.error("%s: %s", what, text)
    if known is None and not isinstance(exc, sqlite3.OperationalError | OutreachError):
        log.error("unexpected database error %s", type(exc).__name__)
    return PlainTextResponse(
        "database busy, retry later" if known is None else "database unavailable, retry later",
        status_code=503,
    )


def _payload_problem(body: bytes) -> str | None:
    """Why a body that gave no events is bad, when it plainly is (JSON but not an object,
    not UTF-8); None for well-formed payloads that just carry nothing for us."""
    stripped = body.strip()
    if stripped[:1] not in (b"{", b"[", b'"') and not stripped[:1].isdigit():
        try:
            stripped.decode("utf-8")
        except UnicodeDecodeError:
            return "the body is not UTF-8"
        return None
    try:
        data = json.loads(stripped)
    except (ValueError, RecursionError):
        return "the body is not valid JSON"
    if not isinstance(data, dict):
        return "expected a JSON object"
    return None


def _webhook_request(server: _Server, request: Request, body: bytes) -> WebhookRequest:
    return WebhookRequest(
        method=request.method,
        url=_called_url(server, request),
        headers={k.lower(): v for k, v in request.headers.items()},
        query=dict(request.query_params),
        body=body,
    )


def _called_url(server: _Server, request: Request) -> str:
    public = server.config.server.public_url
    if not public:
        return str(request.url)
    query = request.url.query
    return public + request.url.path + (f"?{query}" if query else "")


def _handshake(provider: Provider, request: WebhookRequest) -> Response:
    try:
        answer = provider.handshake(request)
    except SignatureError as exc:
        return PlainTextResponse(str(exc), status_code=exc.status)
    if answer is None:
        return PlainTextResponse("this channel has no GET handshake", status_code=405)
    return _answer(answer)


def _answer(answer: WebhookResponse) -> Response:
    return Response(answer.body, status_code=answer.status, media_type=answer.media_type)


def _form_fields(body: bytes, content_type: str) -> dict[str, list[str]]:
    """The fields of a form POST, ``application/x-www-form-urlencoded`` or, as RFC 8058
    recommends for the one-click unsubscribe, ``multipart/form-data`` (read with the email
    package's MIME parser, which is what multipart/form-data is)."""
    if not content_type.lower().lstrip().startswith("multipart/form-data"):
        return parse_qs(body.decode("utf-8", "replace"))
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    fields: dict[str, list[str]] = {}
    if not isinstance(message, EmailMessage) or not message.is_multipart():
        return fields
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str) and not part.get_filename():
            payload = part.get_payload(decode=True)
            value = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
            fields.setdefault(name, []).append(value)
    return fields


def _page(title: str, text: str, status: int, locale: str | None = None) -> HTMLResponse:
    return HTMLResponse(
        f'<!doctype html><html lang="{language(locale)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>",
        status_code=status,
    )


def _confirm_page(path: str, channel: str, locale: str | None) -> HTMLResponse:
    title = html.escape(phrase("unsubscribe_title", locale))
    return HTMLResponse(
        f'<!doctype html><html lang="{language(locale)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title></head><body><h1>{title}</h1>"
        f"<p>{html.escape(phrase('unsubscribe_question', locale, channel=channel))}</p>"
        f'<form method="post" action="{html.escape(path)}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        f'<button type="submit">{html.escape(phrase("unsubscribe_button", locale))}</button>'
        "</form></body></html>"
    )


def run_server(ws: Workspace, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM; then stop cleanly (replies accepted go out first) and
    return, so that the command exits 0: a supervisor (systemd's ``Restart=on-failure``)
    sees a clean stop, not a failure with status 143."""
    app = create_app(ws)
    stops: list[int] = []
    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        # uvicorn handles the signal, then raises it again once it has shut down: that
        # second one only notes the stop (only the main thread can set handlers)
        with suppress(ValueError):
            previous[sig] = signal.signal(sig, lambda signum, _frame: stops.append(signum))
    poller = MailPoller(ws.config).start()  # channels with imap_poll: email replies too
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="info",
            access_log=False,
            http=deadlines(AutoHTTPProtocol),
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
    finally:
        poller.stop()
        for number, handler in previous.items():
            signal.signal(number, handler)
    if stops:
        log.info("stopped by %s", signal.Signals(stops[0]).name)


_TOO_SLOW = f"the request body did not arrive within {BODY_SECONDS:g} s".encode()
# written by the connection itself, as uvicorn writes its own 400 to a request it cannot
# parse
TOO_SLOW_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TOO_SLOW), _TOO_SLOW)
)


def deadlines(base: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, closing a connection whose request headers have not all
    come in HEADER_SECONDS, and answering 408 (then closing) to a request whose body has
    not all come in BODY_SECONDS after its headers.

    uvicorn times out only idle keep-alive connections (``timeout_keep_alive``) and bounds
    the header size (h11's ``max_incomplete_event_size``); a client that sends its headers
    or its body a byte at a time (slowloris) would hold a connection for ever. Both of its
    protocols (httptools, h11) set ``cycle`` once a request's headers are complete, clear
    its ``more_body`` once its body is, and it is done (``response_complete``) until the
    next request's headers are.

    A request only notes when its wait began; the connection's one timer looks at that
    when it fires, and is set again for the wait then under way. A timer armed and
    cancelled per request, for the headers and for the body, cost about 65,000
    instructions a webhook.
    """

    class Protocol(base):  # type: ignore[valid-type,misc]
        _deadline: asyncio.TimerHandle | None = None
        _waiting_since = 0.0
        _request: object = None  # the request whose body is due BODY_SECONDS after...
        _request_since = 0.0  # ...this: when its headers were in

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._wait_for_headers()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            cycle = getattr(self, "cycle", None)
            if cycle is not self._request and cycle is not None:
                self._request = cycle
                self._request_since = asyncio.get_running_loop().time()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._wait_for_headers()  # the next request's headers are due in time too

        def _waiting_for_headers(self) -> bool:
            cycle = getattr(self, "cycle", None)
            return cycle is None or bool(getattr(cycle, "response_complete", False))

        def _waiting_for_body(self) -> bool:
            cycle = getattr(self, "cycle", None)
            return (
                cycle is self._request
                and bool(getattr(cycle, "more_body", False))
                and not getattr(cycle, "response_started", True)
            )

        def _wait_for_headers(self) -> None:
            loop = asyncio.get_running_loop()
            self._waiting_since = loop.time()
            if self._deadline is None:
                self._deadline = loop.call_at(self._waiting_since + HEADER_SECONDS, self._check)

        def _check(self) -> None:
            self._deadline = None
            transport = getattr(self, "transport", None)
            if transport is None or transport.is_closing():
                return
            if self._waiting_for_headers():
                due, answer = self._waiting_since + HEADER_SECONDS, b""
            elif self._waiting_for_body():
                due, answer = self._request_since + BODY_SECONDS, TOO_SLOW_RESPONSE
            else:
                return  # a request is being answered; its response sets the next wait
            loop = asyncio.get_running_loop()
            if loop.time() < due:  # a later wait than the one this timer was set for
                self._deadline = loop.call_at(due, self._check)
                return
            if answer:
                transport.write(answer)
            transport.close()

    return Protocol
