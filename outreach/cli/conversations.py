"""outreach replies ingest, conversations list|show|close, reply, serve."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..channels import REGISTRY
from .options import JsonOption, workspace
from .output import (
    console,
    local_time,
    note,
    plural,
    print_json,
    print_table,
    stream_json_list,
)

replies_app = typer.Typer(
    help="Feed customers' replies in from files or standard input.", no_args_is_help=True
)
conversations_app = typer.Typer(
    help="Read, list and close customer conversations (one per customer, every channel).",
    no_args_is_help=True,
)

CustomerArg = Annotated[str, typer.Argument(help="The customer id (or an unverified contact id).")]


# normalized JSON lines, the webhook payloads of a provider (one that receives none is
# refused by ingest in one line), or emails; built from the registry, so mypy cannot list
# its members
IngestFormat = StrEnum(  # type: ignore[misc]
    "IngestFormat", {name: name for name in ("jsonl", *REGISTRY, "eml", "mbox", "maildir")}
)
_JSONL = IngestFormat("jsonl")


def register(app: typer.Typer) -> None:
    """Add the replies and conversations groups and the reply and serve commands."""
    app.add_typer(replies_app, name="replies")
    app.add_typer(conversations_app, name="conversations")
    app.command("reply", epilog='Example: outreach reply c001 "Thanks, fixed it!"')(reply)
    app.command("serve", epilog="Example: outreach serve --port 8787")(serve)


@replies_app.command(
    "ingest",
    epilog='Example: echo \'{"channel":"sms","from":"+31612345678","text":"9","id":"m1"}\' '
    "| outreach replies ingest -",
)
def ingest(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE|-",
            help='JSON lines {"channel","from","text","received_at","id"}, one message a '
            "line; - reads standard input.",
        ),
    ],
    channel: Annotated[
        str | None,
        typer.Option("--channel", help="Channel for lines without one (and for --format)."),
    ] = None,
    fmt: Annotated[
        IngestFormat,
        typer.Option(
            "--format",
            help="jsonl (normalized lines), a provider (each line is that provider's own "
            "webhook payload; Twilio's as form data or a JSON object of its fields), or "
            "email: eml (one message), mbox (a file), maildir (a folder).",
        ),
    ] = _JSONL,
    as_json: JsonOption = False,
) -> None:
    """Store replies, apply keywords and survey answers, send confirmations; the same
    message id twice is stored once. Exit 3 when some lines were rejected or a reply was
    not sent."""
    from ..conversations.ingest import ingest as run_ingest
    from ..errors import PartialFailure, UsageError

    ws = workspace(ctx)
    if fmt.value in ("eml", "mbox", "maildir"):
        from ..mail.files import ingest_mail

        summary = ingest_mail(ws, file, fmt.value, channel)
        name = "stdin" if file == "-" else Path(file).name
    elif file == "-":
        if sys.stdin is None or sys.stdin.closed:
            raise UsageError(
                "replies ingest -: standard input is closed; pipe replies into it or name a file"
            )
        summary = run_ingest(ws, sys.stdin.buffer, channel=channel, fmt=fmt.value)
        name = "stdin"
    else:
        path = Path(file)
        try:
            with path.open("rb") as stream:
                summary = run_ingest(ws, stream, channel=channel, fmt=fmt.value)
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            raise UsageError(f"{file}: cannot read it ({exc.strerror}); check the path") from None
        name = path.name
    result = summary.as_dict()
    if as_json:
        print_json(result)
    else:
        for line, reason in summary.rejected:
            note(f"{name}:{line}: {reason}")
        for problem in dict.fromkeys(summary.problems):
            note(f"reply not sent: {problem}")
        keywords = ", ".join(f"{w} {n}" for w, n in sorted(summary.keywords.items())) or "none"
        answers = summary.survey_answers + summary.unclear_answers
        replies = len(summary.replies_queued)
        console.print(
            f"{plural(summary.stored, 'message')} stored, "
            f"{plural(summary.duplicates, 'duplicate')}, "
            f"{plural(summary.new_contacts, 'new contact')}; keywords: {keywords}; "
            f"{plural(answers, 'survey answer')} ({summary.survey_answers:,} valid, "
            f"{summary.unclear_answers:,} unclear); "
            f"{plural(summary.needs_attention, 'conversation needs', 'conversations need')} "
            f"attention; {summary.replies_sent:,} of {replies:,} replies sent; "
            f"{plural(summary.status_updates, 'status update')}; "
            f"{plural(summary.automatic, 'automatic reply', 'automatic replies')}, "
            f"{plural(summary.bounces, 'bounce')}; "
            f"{plural(len(summary.rejected), 'line')} rejected.",
            markup=False,
        )
    partial: list[str] = []
    if summary.rejected:
        partial.append(
            f"{name}: {len(summary.rejected):,} lines were rejected (first: line "
            f"{summary.rejected[0][0]}: {summary.rejected[0][1]}); fix them and ingest again "
            "(already stored messages are not duplicated)"
        )
    unsent = len(summary.replies_queued) - summary.replies_sent
    if unsent > 0:
        why = summary.problems[0] if summary.problems else "see outreach queue"
        partial.append(
            f"{unsent:,} of {len(summary.replies_queued):,} replies were not sent ({why})"
        )
    if partial:
        raise PartialFailure("; ".join(partial))


@conversations_app.command("list", epilog="Example: outreach conversations list --needs-attention")
def list_conversations(
    ctx: typer.Context,
    needs_attention: Annotated[
        bool,
        typer.Option("--needs-attention", help="Only conversations waiting for a person."),
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only with a message at or after this time: "
            "2026-11-01, '2026-11-01 09:00', ISO 8601, or relative: 7d, 12h. "
            "Without a zone: workspace time zone.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Conversations, most recent first: customer, name, last message, channel, attention."""
    from ..conversations.agents import list_conversations as rows
    from ..reports.export import parse_moment

    ws = workspace(ctx)
    start = parse_moment(since, ws.config.timezone, what="--since") if since else None
    items = rows(ws.store, needs_attention=needs_attention, since=start)
    if as_json:
        stream_json_list(items)
        return
    tz = ws.config.timezone

    def people(item: dict[str, Any]) -> dict[str, Any]:
        attention = ""
        if item["needs_attention"]:
            attention = item["attention_reason"] or "yes"
        return {
            **item,
            "name": item["name"] or ("(unverified contact)" if not item["verified"] else ""),
            "last": local_time(item["last_message_at"], tz),
            "attention": attention,
        }

    shown = print_table(
        (people(i) for i in items),
        ["customer_id", "name", "last", "last_channel", "attention", "status"],
        headers=["customer", "name", "last message", "channel", "needs attention", "status"],
        fold={"name"},
        optional=["status", "last_channel"],
    )
    if not shown:
        note("No conversations" + (" need attention." if needs_attention else " yet."))


@conversations_app.command("show", epilog="Example: outreach conversations show c001")
def show_conversation(
    ctx: typer.Context,
    customer: CustomerArg,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Emails as received: the whole body with the quoted "
            "history, instead of only the new text.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """The whole transcript of one customer, every channel, in order."""
    from ..conversations.agents import show_conversation as show
    from ..conversations.content import describe
    from ..mail.transcript import add_email_details

    ws = workspace(ctx)
    data = show(ws.store, customer)
    add_email_details(ws.store, data, full=full)
    if as_json:
        print_json(data)
        return
    tz = ws.config.timezone
    title = data["name"] or data["customer_id"]
    if not data["verified"]:
        title += " (unverified contact)"
    state = data["status"] or "no messages yet"
    if data["needs_attention"]:
        state += f", needs attention: {data['attention_reason'] or 'yes'}"
    console.print(f"{title} [{data['customer_id']}] — {state}", markup=False)
    for message in data["messages"]:
        arrow = "←" if message["direction"] == "in" else "→"
        who = "customer" if message["direction"] == "in" else (message["author"] or "outreach")
        line = f"{local_time(message['at'], tz)}  {arrow} {message['channel']:<9} {who}: "
        text = message["text"]
        email = message.get("email") or {}
        if full and email.get("full_text"):
            text = email["full_text"].rstrip()
        if message.get("subject"):
            text = f"[{message['subject']}] {text}"
        content = describe(message.get("kind"), message.get("details"))
        if content:
            text = f"{content} {text}".rstrip()
        if email.get("kind") == "auto_reply":
            text = f"(automatic reply) {text}"
        for attachment in email.get("attachments") or []:
            text += (
                f"\n[attachment: {attachment['name'] or 'unnamed'}, {attachment['type']}, "
                f"{attachment['size']:,} bytes]"
            )
        if email.get("problem"):
            text += f"\n[{email['problem']}]"
        console.print(line + text.replace("\n", "\n" + " " * len(line)), markup=False)
        survey = message.get("survey")
        if survey:
            verdict = f"answer {survey['answer']}" if survey["valid"] else "unclear answer"
            console.print(
                f"{' ' * len(line)}(survey {survey['campaign']}: {verdict})", markup=False
            )


@conversations_app.command("close", epilog="Example: outreach conversations close c001")
def close_conversation(ctx: typer.Context, customer: CustomerArg) -> None:
    """Close a conversation and clear its attention flag; a new message reopens it."""
    from ..conversations.agents import close_conversation as close

    ws = workspace(ctx)
    close(ws.store, customer)
    note(f"Closed the conversation with {customer}.")


def reply(
    ctx: typer.Context,
    customer: CustomerArg,
    text: Annotated[str, typer.Argument(help="What to send.")],
    channel: Annotated[
        str | None,
        typer.Option(
            "--channel",
            help="Send on this channel (default: the one the customer "
            "last wrote on, if it still has consent).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Send an agent's reply to a customer now, and clear the conversation's attention flag."""
    from ..conversations.agents import reply as send_reply
    from ..errors import PartialFailure

    ws = workspace(ctx)
    result = send_reply(ws, customer, text, channel)
    if as_json:
        print_json(
            {
                "delivery_id": result.delivery_id,
                "channel": result.channel,
                "status": result.status,
                "error": result.error,
            }
        )
    if result.status in ("sent", "delivered", "read"):
        if not as_json:
            note(f"Sent to {customer} on {result.channel} (delivery {result.delivery_id}).")
        return
    raise PartialFailure(
        f"reply to {customer} on {result.channel} was not sent ({result.status}"
        + (f": {result.error}" if result.error else "")
        + "); see outreach queue"
    )


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address to listen on (default: [server] host, 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", min=0, max=65535, help="Port to listen on (default: [server] port, 8787)."
        ),
    ] = None,
) -> None:
    """Receive webhooks (inbound messages, delivery statuses), one-click unsubscribes and
    health checks over HTTP until interrupted."""
    from ..server.app import run_server

    ws = workspace(ctx)
    channels = ", ".join(f"/webhooks/{c}" for c in ws.config.channels) or "no channels"
    note(f"outreach serve: {channels}, /unsubscribe/TOKEN, /healthz")
    run_server(ws, host or ws.config.server.host, ws.config.server.port if port is None else port)
