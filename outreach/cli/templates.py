"""outreach templates … (being built)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Templates commands.", no_args_is_help=True)
