"""Library-level jobs that a benchmark runs in a child process of their own.

``python -m benchmarks.children JOB ARGS`` prints one JSON object on stdout. A child (not
the benchmark process) so that its memory and CPU are its own, and so that ``render`` can
be pinned to one core as issue 3's figure asks.

- ``render WORKSPACE N``: the NPS survey email for N generated customers through
  ``outreach.templates.render.Renderer`` (compiled once, as a run does); times the loop only.
- ``jinja-ceiling WORKSPACE N``: the same NPS email files (text and HTML, Dutch or English
  by locale) for the same N customers through a bare ``jinja2.Environment``: no sandbox,
  no limits, no header parsing, compiled once. The ceiling of rendering with Jinja2.
- ``apprise URL N``: N JSON notifications through ``apprise``'s library, one after the
  other as ``apprise.notify`` sends them.
- ``httpx-ceiling URL N CONCURRENCY``: N small JSON POSTs with nothing else, straight to
  outreach's own httpx transport (no client layer, as outreach sends), CONCURRENCY at a
  time. The most any sender built on httpx can do against that server on this machine.
- ``smtp-ceiling PORT N CONNECTIONS WS``: N ready-made messages through ``aiosmtplib``
  over CONNECTIONS reused connections, with nothing else: the same for SMTP. The messages
  are the NPS emails ``run nps`` sends the customers of workspace WS, made with outreach's
  renderer before the clock starts, so the server's work per message is the same as for
  outreach's (60 lines, 2 KB; a plain 1.3 KB text of 36 lines cost the server 30 % less):
  8-bit text parts, sent with ``BODY=8BITMIME`` where outreach would (the benchmark's
  aiosmtpd offers 8BITMIME; the child stops if it does not).
- ``seed-replies WORKSPACE N CUSTOMERS``: set-up, not measured: N inbound messages from
  the first CUSTOMERS customers appended through ``store.conversations`` (the
  functions ``replies ingest`` itself writes with), so that ``export`` has a million rows
  without a million-message ingest first.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from .data import NOW, customers, replies

SURVEY = {
    "question": "How likely are you to recommend Acme to a friend or colleague?",
    "type": "nps",
    "choices": [],
}


def render(workspace: Path, n: int) -> dict[str, Any]:
    from outreach import clock
    from outreach.config import load_config
    from outreach.templates.render import Renderer

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    clock.set_now(NOW)
    renderer = Renderer(load_config(workspace))
    people = [c.as_dict() for c in customers(n)]
    campaign = {"name": "nps", "kind": "survey"}
    now = clock.now()
    links = [f"https://hooks.example.com/unsubscribe/{c['id']}" for c in people]
    for customer in people[:50]:  # compile each locale's templates before the clock starts
        renderer.render("nps", "email", customer, campaign=campaign, survey=SURVEY, now=now)
    start = time.perf_counter()
    size = 0
    for customer, link in zip(people, links, strict=True):
        message = renderer.render(
            "nps",
            "email",
            customer,
            campaign=campaign,
            survey=SURVEY,
            unsubscribe_url=link,
            now=now,
        )
        size += len(message.body)
    seconds = time.perf_counter() - start
    return {"count": n, "seconds": seconds, "chars": size}


def jinja_ceiling(workspace: Path, n: int) -> dict[str, Any]:
    import jinja2

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(workspace / "templates" / "nps"),
        autoescape=lambda name: bool(name and ".html" in name),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["first_name"] = lambda name, default="": name.split()[0] if name else default
    pairs = {
        lang: (env.get_template(f"email{suffix}.j2"), env.get_template(f"email.html{suffix}.j2"))
        for lang, suffix in (("nl", ".nl"), ("en", ""))
    }
    people = [c.as_dict() for c in customers(n)]
    links = [f"https://hooks.example.com/unsubscribe/{c['id']}" for c in people]
    start = time.perf_counter()
    size = 0
    for customer, link in zip(people, links, strict=True):
        text, html = pairs["nl" if customer["locale"].startswith("nl") else "en"]
        context = {
            "customer": customer,
            "sender": "Acme",
            "survey": SURVEY,
            "unsubscribe_url": link,
        }
        size += len(text.render(context)) + len(html.render(context))
    seconds = time.perf_counter() - start
    return {"count": n, "seconds": seconds, "chars": size}


def send_apprise(url: str, n: int) -> dict[str, Any]:
    import apprise

    notifier = apprise.Apprise()
    if not notifier.add(url):
        raise SystemExit(f"apprise refused {url}")
    start = time.perf_counter()
    ok = 0
    for i in range(n):
        ok += bool(
            notifier.notify(
                title="Acme survey",
                body=f"How likely are you to recommend "
                f"Acme to a friend or colleague? (customer c{i:07d})",
            )
        )
    return {"count": n, "ok": ok, "seconds": time.perf_counter() - start}


def httpx_ceiling(url: str, n: int, concurrency: int) -> dict[str, Any]:
    import asyncio

    import httpx

    from outreach.channels.http import ShardedTransport

    async def go() -> int:
        left = iter(range(n))
        ok = 0
        transport = ShardedTransport(concurrency)
        target = httpx.URL(url)
        timeout = {"timeout": httpx.Timeout(30).as_dict()}

        async def worker() -> None:
            nonlocal ok
            for i in left:
                request = httpx.Request(
                    "POST", target, json={"id": i, "text": "How likely …"}, extensions=timeout
                )
                answer = await transport.handle_async_request(request)
                ok += answer.status_code == 200

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        await transport.aclose()
        return ok

    start = time.perf_counter()
    ok = asyncio.run(go())
    return {"count": n, "ok": ok, "seconds": time.perf_counter() - start}


def outreach_emails(workspace: Path, n: int, *, eight_bit: bool = True) -> list[tuple[str, bytes]]:
    """(recipient, RFC 5322 bytes) of the NPS emails ``run nps`` sends the first ``n``
    customers of ``workspace``, made by outreach's own renderer and MIME writer: the same
    size and shape (text and HTML parts, 8-bit for a server that offers 8BITMIME, as the
    benchmark's does, else quoted-printable where not ASCII) as the ones it sends."""
    from outreach import clock
    from outreach.channels.base import OutboundMessage
    from outreach.channels.mime import address_of, render_email
    from outreach.config import load_config
    from outreach.templates.render import Renderer

    clock.set_now(NOW)
    renderer = Renderer(load_config(workspace))
    now = clock.now()
    emails = []
    for i, customer in enumerate(c.as_dict() for c in customers(n)):
        rendered = renderer.render(
            "nps",
            "email",
            customer,
            campaign={"name": "nps", "kind": "survey"},
            survey=SURVEY,
            now=now,  # no unsubscribe link: the benchmark's workspaces have no public_url
        )
        message = OutboundMessage(
            delivery_id=f"{i:020x}",
            channel="email",
            customer_id=customer["id"],
            to=customer["email"],
            body=rendered.body,
            subject=rendered.subject,
            html=rendered.html,
            preheader=rendered.preheader,
            customer_name=customer["name"],
            reply_token=f"t{i:015x}",
        )
        data = render_email(message, sender="Acme <hello@example.com>", eight_bit=eight_bit)
        emails.append((address_of(customer["email"]), data))
    return emails


_BODY_8BITMIME = ("BODY=8BITMIME",)


def smtp_ceiling(port: int, n: int, connections: int, workspace: Path) -> dict[str, Any]:
    import asyncio

    import aiosmtplib

    # made before the clock starts: the ceiling sends what outreach sends, no more
    emails = outreach_emails(workspace, min(n, 1000))

    async def go() -> int:
        left = iter(range(n))
        ok = 0

        async def worker() -> None:
            nonlocal ok
            client = aiosmtplib.SMTP(
                hostname="127.0.0.1", port=port, use_tls=False, start_tls=False, timeout=30
            )
            await client.connect()
            await client.ehlo()  # what the first sendmail would do; then its answer is known
            if not client.supports_extension("8bitmime"):
                raise SystemExit("the server does not offer 8BITMIME: the emails are 8-bit")
            for i in left:
                to, data = emails[i % len(emails)]
                # what outreach asks for: BODY=8BITMIME exactly when the bytes are not ASCII
                options = _BODY_8BITMIME if not data.isascii() else ()
                await client.sendmail("hello@example.com", [to], data, mail_options=options)
                ok += 1
            await client.quit()

        await asyncio.gather(*(worker() for _ in range(connections)))
        return ok

    start = time.perf_counter()
    ok = asyncio.run(go())
    return {"count": n, "ok": ok, "seconds": time.perf_counter() - start}


def seed_replies(workspace: Path, n: int, customer_count: int) -> dict[str, Any]:

    from outreach.config import load_config
    from outreach.store import open_store

    by_address: dict[str, str] = {}
    for c in customers(customer_count):
        by_address[c.email] = c.id
        by_address[c.phone] = c.id
    store = open_store(load_config(workspace).database)
    conversations: dict[str, int] = {}
    stored = 0
    batch = 20_000
    stream = iter(replies(n, customer_count))
    start = time.perf_counter()
    try:
        while True:
            chunk = [r for _, r in zip(range(batch), stream, strict=False)]
            if not chunk:
                break
            with store.write():
                for r in chunk:
                    customer_id = by_address.get(r["from"])
                    if customer_id is None:
                        continue  # unknown senders: ingest makes contacts; not needed here
                    conversation = conversations.get(customer_id)
                    if conversation is None:
                        conversation = store.conversations.ensure_conversation(
                            customer_id, r["received_at"]
                        )
                        conversations[customer_id] = conversation
                    if store.conversations.insert_message(
                        conversation_id=conversation,
                        customer_id=customer_id,
                        direction="in",
                        channel=r["channel"],
                        address=r["from"],
                        text=r["text"],
                        external_id=r["id"],
                        at=r["received_at"],
                    ):
                        stored += 1
    finally:
        store.close()
    return {"count": stored, "seconds": time.perf_counter() - start}


def main(argv: list[str]) -> int:
    job = argv[0] if argv else ""
    if job == "render" and len(argv) == 3:
        result = render(Path(argv[1]), int(argv[2]))
    elif job == "jinja-ceiling" and len(argv) == 3:
        result = jinja_ceiling(Path(argv[1]), int(argv[2]))
    elif job == "apprise" and len(argv) == 3:
        result = send_apprise(argv[1], int(argv[2]))
    elif job == "httpx-ceiling" and len(argv) == 4:
        result = httpx_ceiling(argv[1], int(argv[2]), int(argv[3]))
    elif job == "smtp-ceiling" and len(argv) == 5:
        result = smtp_ceiling(int(argv[1]), int(argv[2]), int(argv[3]), Path(argv[4]))
    elif job == "seed-replies" and len(argv) == 4:
        result = seed_replies(Path(argv[1]), int(argv[2]), int(argv[3]))
    else:
        print(
            "usage: python -m benchmarks.children render WS N | jinja-ceiling WS N | "
            "apprise URL N | httpx-ceiling URL N CONCURRENCY | "
            "smtp-ceiling PORT N CONNECTIONS WS | seed-replies WS N CUSTOMERS",
            file=sys.stderr,
        )
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
