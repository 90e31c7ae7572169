"""``outreach serve``: a small Starlette app, thin over ``inbound`` (SPEC §7).

Routes: ``POST /webhooks/CHANNEL`` (inbound messages and delivery statuses, verified by the
channel's provider before anything is parsed or stored), ``GET /webhooks/CHANNEL`` (Meta's
``hub.challenge`` handshake), ``GET|POST /unsubscribe/TOKEN`` (a confirmation page, and the
RFC 8058 one-click POST) and ``GET /healthz``.

Concurrency: database work runs in worker threads (``run_in_threadpool``) on one store
connection of the server's own, serialized by a lock, so webhook bursts queue in memory
instead of spinning on SQLite's busy handler; another process (``outreach run``) is waited
for through the busy timeout and BEGIN IMMEDIATE. Webhooks are stored by one writer task
with group commit: every request that arrives while a transaction runs joins the next
one, and is answered only after that commit, so a 200 always means "stored".

Replies that inbound messages cause (keyword confirmations, follow-ups, auto-replies) are
handed to one sender thread with its own workspace, connection and event loop, which sends
them in bunches (a second's worth at a time): a webhook is answered without waiting for a
provider, sends never overlap within the server, and the sending engine's database waits
and set-up never stall the event loop that answers webhooks.

Signatures are checked against the URL the provider called: ``[server] public_url`` + path
(+ query) when set (behind a proxy or tunnel), else the request's own URL.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .channels import build_provider
from .channels.base import InboundEvent, Provider, ProviderContext, WebhookRequest
from .errors import ConfigError, NotFoundError, OutreachError, SignatureError
from .inbound import InboundSummary, Inbox, receive
from .store import BUSY_TIMEOUT_MS, Store, open_store

if TYPE_CHECKING:
    from .workspace import Workspace

MAX_BODY_BYTES = 1024 * 1024
MAX_FORM_BYTES = 64 * 1024
SEND_BATCH = 500
REPLY_GATHER_SECONDS = 1.0
SHUTDOWN_SEND_SECONDS = 15.0
WRITE_GROUP = 256
log = logging.getLogger("outreach.serve")
T = TypeVar("T")
_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


class BodyTooLarge(Exception):
    """The request body is over the limit."""


class _Server:
    """The app's state: one store and lock for inbound work, providers, the reply sender."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.config = ws.config
        self.lock = threading.Lock()
        self._store: Store | None = None
        self._providers: dict[str, Provider] = {}
        self._key: bytes | None = None
        self._inbox: Inbox | None = None
        self.outbox: queue.Queue[str | None] = queue.Queue()
        self.sender: threading.Thread | None = None
        self.pending: asyncio.Queue[tuple[list[InboundEvent], asyncio.Future[Any]]] | None = None

    # -- database work, always in a worker thread under the lock -------------------------

    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.config.database)
            # Take the write lock by polling (see _when_unlocked), not SQLite's busy handler.
            self._store.conn.execute("PRAGMA busy_timeout = 0")
        return self._store

    def receive(self, requests: list[list[InboundEvent]]) -> list[InboundSummary]:
        with self.lock:
            store = self.store()
            if self._inbox is None:
                self._inbox = Inbox(store, self.config)
            inbox = self._inbox
            return _when_unlocked(lambda: receive(store, self.config, requests, inbox))

    async def submit(self, events: list[InboundEvent]) -> InboundSummary:
        """Have the writer store one request's events; waits for the commit."""
        assert self.pending is not None
        future: asyncio.Future[InboundSummary] = asyncio.get_running_loop().create_future()
        self.pending.put_nowait((events, future))
        return await future

    async def write_forever(self) -> None:
        """Group commit: the requests that arrived while the last transaction ran are stored
        together in the next one, so one commit serves many concurrent webhooks."""
        assert self.pending is not None
        while True:
            group = [await self.pending.get()]
            while len(group) < WRITE_GROUP and not self.pending.empty():
                group.append(self.pending.get_nowait())
            await self._write(group)

    async def _write(self, group: list[tuple[list[InboundEvent], asyncio.Future[Any]]]) -> None:
        try:
            summaries = await run_in_threadpool(self.receive, [events for events, _ in group])
        except Exception as exc:
            if len(group) > 1:
                # one request's failure must not fail the others: store them one by one
                for item in group:
                    await self._write([item])
                return
            if not group[0][1].done():
                group[0][1].set_exception(exc)
            return
        for (_, future), summary in zip(group, summaries, strict=True):
            if not future.done():
                future.set_result(summary)

    def signing_key(self) -> bytes:
        from .store.meta import signing_key

        with self.lock:
            if self._key is None:
                store = self.store()
                self._key = _when_unlocked(lambda: signing_key(store))
            return self._key

    def unsubscribe(self, customer_id: str, channel: str, evidence: str) -> bool:
        """Record the opt-out; False when the customer already was opted out there."""
        from . import consent
        from .store.consent import current_consent_for

        with self.lock:
            store = self.store()
            if current_consent_for(store, customer_id, channel) == consent.OPTED_OUT:
                return False
            _when_unlocked(lambda: consent.record(
                store, self.config, [customer_id], channel, consent.OPTED_OUT,
                source="unsubscribe-link", evidence=evidence,
            ))
            return True

    def healthy(self) -> bool:
        with self.lock:
            self.store().conn.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
        return True

    def close(self) -> None:
        with self.lock:
            if self._store is not None:
                self._store.close()
                self._store = None
                self._inbox = None

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

    # -- replies --------------------------------------------------------------------------

    def queue_replies(self, delivery_ids: list[str]) -> None:
        for delivery in delivery_ids:
            self.outbox.put(delivery)

    def start_sender(self) -> None:
        self.sender = threading.Thread(target=self._send_forever, name="outreach-replies",
                                       daemon=True)
        self.sender.start()

    def stop_sender(self, timeout: float) -> None:
        """Let replies already accepted go out, then stop the sender thread."""
        if self.sender is None:
            return
        self.outbox.put(None)
        self.sender.join(timeout)
        if self.sender.is_alive():
            log.warning("stopping with about %d replies unsent", self.outbox.qsize())

    def _send_forever(self) -> None:
        """The sender thread: queued replies, in batches, through the sending engine, with a
        workspace (database connection) and event loop of its own, so that neither its
        database waits nor its provider set-up ever hold up the webhook event loop."""
        from . import sending
        from .workspace import Workspace

        sender = Workspace(self.config)
        stopping = False
        try:
            while not stopping:
                first = self.outbox.get()
                if first is None:
                    break
                # A send pass has a fixed cost (providers, HTTP clients, templates): let the
                # replies of a burst of webhooks gather and go out in one pass.
                time.sleep(REPLY_GATHER_SECONDS)
                batch = [first]
                while len(batch) < SEND_BATCH and not self.outbox.empty():
                    item = self.outbox.get_nowait()
                    if item is None:
                        stopping = True
                        break
                    batch.append(item)
                try:
                    sending.send_deliveries(sender, batch)
                except Exception:  # a failed pass must not stop later replies
                    log.exception("sending %d replies failed", len(batch))
        finally:
            sender.close()


def create_app(ws: Workspace) -> Starlette:
    """The ASGI app of ``outreach serve`` for one workspace."""
    server = _Server(ws)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        server.pending = asyncio.Queue()
        server.start_sender()
        writer = asyncio.create_task(server.write_forever())
        try:
            yield
        finally:
            writer.cancel()
            with suppress(asyncio.CancelledError):
                await writer
            await run_in_threadpool(server.stop_sender, SHUTDOWN_SEND_SECONDS)
            await server.aclose_providers()
            await run_in_threadpool(server.close)

    async def webhook(request: Request) -> Response:
        channel = request.path_params["channel"]
        if channel not in server.config.channels:
            return PlainTextResponse(f"no channel {channel}", status_code=404)
        try:
            provider = server.provider(channel)
        except ConfigError as exc:
            log.error("webhook for %s: %s", channel, exc)
            return PlainTextResponse(f"channel {channel} is not ready", status_code=503)
        if request.method == "GET":
            return _handshake(provider, request)
        try:
            body = await _read_body(request, MAX_BODY_BYTES)
        except BodyTooLarge:
            return PlainTextResponse("request body is too large", status_code=413)
        except ValueError:
            return PlainTextResponse("bad Content-Length", status_code=400)
        webhook_request = WebhookRequest(
            method=request.method,
            url=_called_url(server, request),
            headers={k.lower(): v for k, v in request.headers.items()},
            query=dict(request.query_params),
            body=body,
        )
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
            return PlainTextResponse("cannot read this payload (nested too deeply)",
                                     status_code=400)
        if not events:
            problem = _payload_problem(body)
            if problem:
                return PlainTextResponse(problem, status_code=400)
        try:
            summary = await server.submit(events)
        except sqlite3.OperationalError as exc:
            # busy beyond the timeout: answer 503 so the provider retries later
            log.error("webhook for %s not stored: %s", channel, exc)
            return PlainTextResponse("database busy, retry later", status_code=503)
        server.queue_replies(summary.replies_queued)
        if summary.rejected and not (summary.stored or summary.duplicates
                                     or summary.status_updates or summary.status_ignored):
            reasons = "; ".join(reason for _, reason in summary.rejected)
            return PlainTextResponse(f"rejected: {reasons}", status_code=400)
        if provider.name == "twilio":
            return Response(_TWIML, media_type="text/xml")
        return JSONResponse({
            "messages": summary.messages,
            "stored": summary.stored,
            "duplicates": summary.duplicates,
            "status_updates": summary.status_updates,
            "rejected": len(summary.rejected),
        })

    async def unsubscribe(request: Request) -> Response:
        from .tokens import read_unsubscribe_token

        token = request.path_params["token"]
        key = await run_in_threadpool(server.signing_key)
        try:
            customer_id, channel = read_unsubscribe_token(key, token)
        except SignatureError:
            return _page("Invalid link", "This unsubscribe link is not valid. Copy the whole "
                         "link from the message, or reply STOP to it.", 404)
        if channel not in server.config.channels:
            return _page("Unknown channel", "These messages are no longer sent.", 410)
        if request.method == "GET":
            return _confirm_page(request.url.path, channel)
        try:
            body = await _read_body(request, MAX_FORM_BYTES)
        except (BodyTooLarge, ValueError):
            return PlainTextResponse("request body is too large", status_code=413)
        form = parse_qs(body.decode("utf-8", "replace"))
        if form.get("List-Unsubscribe") != ["One-Click"]:
            return _page("Not unsubscribed",
                         "Use the button on the unsubscribe page to confirm.", 400)
        try:
            await run_in_threadpool(
                server.unsubscribe, customer_id, channel, f"one-click POST {request.url.path}"
            )
        except NotFoundError:
            return _page("Invalid link", "This unsubscribe link is not valid.", 404)
        except sqlite3.OperationalError:
            return PlainTextResponse("database busy, retry later", status_code=503)
        return _page("Unsubscribed",
                     f"You will get no more messages from {server.config.sender_name} on "
                     f"{channel}.", 200)

    async def healthz(request: Request) -> Response:
        try:
            await run_in_threadpool(server.healthy)
        except (sqlite3.Error, OutreachError) as exc:
            return JSONResponse({"status": "error", "error": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok"})

    routes = [
        Route("/webhooks/{channel}", webhook, methods=["GET", "POST"]),
        Route("/unsubscribe/{token}", unsubscribe, methods=["GET", "POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def _when_unlocked(work: Callable[[], T]) -> T:
    """Run a write transaction, retrying while another process holds the write lock.

    SQLite's own busy handler sleeps 25-100 ms between tries once it has waited a little,
    so against a ``run`` that commits every few milliseconds it keeps missing the short gaps
    between transactions and webhooks starve. Polling every millisecond or two catches them.
    A failed BEGIN IMMEDIATE has changed nothing, so the whole ``work`` is simply retried.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = 0.0005
    while True:
        try:
            return work()
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 1.5, 0.002)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused (BodyTooLarge) past ``limit`` by its Content-Length or, when that is
    absent or lies, by counting while reading."""
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


def _called_url(server: _Server, request: Request) -> str:
    public = server.config.server.public_url
    if not public:
        return str(request.url)
    query = request.url.query
    return public + request.url.path + (f"?{query}" if query else "")


def _handshake(provider: Any, request: Request) -> Response:
    handshake = getattr(provider, "handshake", None)
    if handshake is None:
        return PlainTextResponse("this channel has no GET handshake", status_code=405)
    try:
        challenge = handshake(dict(request.query_params))
    except SignatureError as exc:
        return PlainTextResponse(str(exc), status_code=exc.status)
    return PlainTextResponse(str(challenge))


def _page(title: str, text: str, status: int) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>",
        status_code=status,
    )


def _confirm_page(path: str, channel: str) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Unsubscribe</title></head><body><h1>Unsubscribe</h1>"
        f"<p>Stop receiving messages on {html.escape(channel)}?</p>"
        f'<form method="post" action="{html.escape(path)}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form></body></html>'
    )


def run_server(ws: Workspace, host: str, port: int) -> None:
    """Serve until interrupted (``outreach serve``)."""
    import uvicorn

    app = create_app(ws)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
