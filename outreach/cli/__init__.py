"""The root command: global options, command registration and the one error mapping.

Every command module is thin: parse options, call one domain function, render. Errors
a user can cause are ``OutreachError``s, turned here, and only here, into one line on
stderr and the exit code of SPEC §11 (``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from ..errors import OutreachError
from . import campaigns as campaigns_cli
from . import channels as channels_cli
from . import consent as consent_cli
from . import conversations as conversations_cli
from . import customers as customers_cli
from . import export as export_cli
from . import templates as templates_cli
from . import workspace as workspace_cli
from .options import State, state


class OutreachGroup(TyperGroup):
    """Maps OutreachError to one stderr line and its exit code (SPEC §11)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except OutreachError as exc:
            st = ctx.obj if isinstance(ctx.obj, State) else None
            if st is not None and st.debug:
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        finally:
            if isinstance(ctx.obj, State):
                ctx.obj.close()


app = typer.Typer(
    cls=OutreachGroup,
    name="outreach",
    help="Proactive, two-way customer messaging: surveys, notifications and updates on each "
    "customer's own channel, inside their local-time window, with every reply kept in one "
    "conversation per customer.",
    epilog="Start with `outreach demo`, or `outreach init` for a workspace of your own.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    ctx: typer.Context,
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace",
            "-w",
            help="Workspace folder (default: OUTREACH_WORKSPACE, else the nearest folder "
            "upwards with an outreach.toml).",
            file_okay=False,
        ),
    ] = None,
    now: Annotated[
        str | None,
        typer.Option(
            "--now",
            help="Pretend the time is this (ISO 8601; also OUTREACH_NOW), for tests and "
            "what-if runs.",
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")
    ] = False,
) -> None:
    """Global options."""
    st = state(ctx)
    st.workspace_path = workspace
    st.debug = debug
    if now is not None:
        from .. import clock

        clock.set_now(now)


workspace_cli.register(app)
app.add_typer(customers_cli.app, name="customers")
app.add_typer(consent_cli.app, name="consent")
app.add_typer(templates_cli.app, name="templates")
app.add_typer(channels_cli.app, name="channels")
campaigns_cli.register(app)
conversations_cli.register(app)
export_cli.register(app)


def _terminate(signum: int, frame: object) -> None:
    sys.exit(128 + signum)


def main() -> None:
    """Console-script entry point."""
    # SIGTERM (systemd, kill) unwinds like Ctrl-C does, so that finally blocks run: an
    # export removes its temporary file, a transaction rolls back
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - only reached outside commands
        sys.exit(130)
