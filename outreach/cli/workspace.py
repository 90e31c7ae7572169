"""outreach init, status and demo: creating and looking at a workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import JsonOption, workspace
from .output import note, print_json


def register(app: typer.Typer) -> None:
    """Add init, status and demo to the root app."""
    app.command("init", epilog="Example: outreach init acme && cd acme && outreach status")(init)
    app.command("status")(status)


def init(
    folder: Annotated[
        Path, typer.Argument(help="Folder for the new workspace (created if missing).")
    ] = Path("."),
    force: Annotated[
        bool, typer.Option("--force", help="Add missing example files to an existing workspace.")
    ] = False,
) -> None:
    """Create a workspace: a commented outreach.toml, example templates and campaigns."""
    from ..workspace import init_workspace

    written = init_workspace(folder, force=force)
    note(f"Created workspace {folder} ({len(written)} files).")
    note("Every channel uses the outbox provider: messages are written to outbox/CHANNEL/.")
    note("Next: outreach customers import customers.csv, then outreach templates check.")


def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Customers, consent per channel, channels, due campaigns, queue, attention needed."""
    from ..status import workspace_status

    info = workspace_status(workspace(ctx))
    if as_json:
        print_json(info)
        return
    from .output import console

    for key, value in info.items():
        console.print(f"[bold]{key}[/bold]: {value}")
