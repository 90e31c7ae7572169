"""outreach consent grant|revoke|show: thin over ``outreach.consent``."""

from __future__ import annotations

from typing import Annotated

import typer

from .options import JsonOption, workspace
from .output import note, print_json

# the commands of `outreach consent`: its help is in cli/__init__.py, where the root
# reads it without importing this module
app = typer.Typer()

ChannelOption = Annotated[
    str, typer.Option("--channel", "-c", help="Channel name from outreach.toml, e.g. sms.")
]
SourceOption = Annotated[
    str,
    typer.Option(
        "--source",
        help="Where the consent came from (cli, import:FILE, keyword:STOP, "
        "unsubscribe-link, provider, or your own).",
    ),
]
EvidenceOption = Annotated[
    str | None,
    typer.Option("--evidence", help="Proof to keep with the record, e.g. a form id or ticket."),
]
CustomersArg = Annotated[list[str], typer.Argument(help="One or more customer ids.")]


def _record(
    ctx: typer.Context,
    customers: list[str],
    channel: str,
    status: str,
    source: str,
    evidence: str | None,
) -> None:
    from ..consent import OPTED_IN, OPTED_OUT, record

    ws = workspace(ctx)
    count = record(
        ws.store,
        ws.config,
        customers,
        channel,
        OPTED_IN if status == "opted_in" else OPTED_OUT,
        source=source,
        evidence=evidence,
    )
    word = "Granted" if status == "opted_in" else "Revoked"
    note(f"{word} consent on {channel} for {count} customer{'s' if count != 1 else ''}.")


@app.command(
    "grant", epilog="Example: outreach consent grant c001 c002 --channel sms --source web-form"
)
def grant(
    ctx: typer.Context,
    customers: CustomersArg,
    channel: ChannelOption,
    source: SourceOption = "cli",
    evidence: EvidenceOption = None,
) -> None:
    """Record that customers opted in on a channel."""
    _record(ctx, customers, channel, "opted_in", source, evidence)


@app.command("revoke", epilog="Example: outreach consent revoke c001 --channel sms --source phone")
def revoke(
    ctx: typer.Context,
    customers: CustomersArg,
    channel: ChannelOption,
    source: SourceOption = "cli",
    evidence: EvidenceOption = None,
) -> None:
    """Record that customers opted out on a channel; nothing is sent there any more."""
    _record(ctx, customers, channel, "opted_out", source, evidence)


@app.command("show", epilog="Example: outreach consent show c001 --json")
def show(
    ctx: typer.Context,
    customer: Annotated[str, typer.Argument(help="Customer id.")],
    as_json: JsonOption = False,
) -> None:
    """Show a customer's consent per channel and the whole ledger history."""
    from ..consent import consent_report
    from .output import print_consent, print_table

    ws = workspace(ctx)
    report = consent_report(ws.store, ws.config, customer)
    if as_json:
        print_json(report)
        return
    tz = ws.config.timezone
    print_consent(report["current"], f"Consent of {customer}", tz)
    print_table(
        report["history"],
        ["recorded_at", "channel", "status", "source", "evidence"],
        headers=["recorded", "channel", "status", "source", "evidence"],
        title="History (oldest first)",
        fold={"source", "evidence"},
        times={"recorded_at"},
        tz=tz,
    )
