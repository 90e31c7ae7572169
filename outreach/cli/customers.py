"""outreach customers … (being built)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Customers commands.", no_args_is_help=True)
