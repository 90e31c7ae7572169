"""Options shared by many commands, and the per-invocation state they fill in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from ..workspace import Workspace

JsonOption = Annotated[bool, typer.Option("--json", help="Print only JSON on stdout.")]
LimitOption = Annotated[
    int | None, typer.Option("--limit", min=1, help="Show or handle at most N items.")
]


@dataclass
class State:
    """What the root callback parsed: where the workspace is, and --debug."""

    workspace_path: Path | None = None
    debug: bool = False
    _workspace: Workspace | None = field(default=None, repr=False)

    def workspace(self) -> Workspace:
        """The workspace of this invocation, loaded on first use."""
        if self._workspace is None:
            from ..workspace import Workspace

            self._workspace = Workspace.load(self.workspace_path)
        return self._workspace

    def set_now(self, text: str) -> None:
        """--now: checked at once; a time without a zone is read in the workspace's."""
        from .. import clock

        clock.set_now(text)

    @property
    def loaded(self) -> Workspace | None:
        """The workspace, if this invocation has loaded it (never loads it)."""
        return self._workspace

    def close(self) -> None:
        if self._workspace is not None:
            self._workspace.close()


def state(ctx: typer.Context) -> State:
    """The State of this invocation, from any command's context."""
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


def workspace(ctx: typer.Context) -> Workspace:
    """Shortcut: the loaded workspace of this invocation."""
    return state(ctx).workspace()
