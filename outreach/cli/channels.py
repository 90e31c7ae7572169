"""outreach channels … (being built)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Channels commands.", no_args_is_help=True)
