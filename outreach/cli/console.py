"""The rich console of every command: a pipe or a file gets the full width of the content.

Imported on a command's first output (``output.console``), not at start-up.
"""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console, ConsoleDimensions

# a pipe has no width: tables there are as wide as their content (rich would say 80)
PIPE_WIDTH = 1000


class WideConsole(Console):
    """A rich console that gives a pipe or a file the full width of the content."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # COLUMNS and LINES are read when drawing, not kept from construction: made on
        # first use, the console would keep those of whichever command drew first (the
        # tests' CliRunner sets them per invocation); in one process both read the same
        self._width = self._height = None

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if self._width is None and not self.is_terminal and not os.environ.get("COLUMNS"):
            return ConsoleDimensions(PIPE_WIDTH, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size
