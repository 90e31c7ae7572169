"""Finding, opening and creating workspaces.

A workspace is a folder with ``outreach.toml``, ``templates/``, ``campaigns/`` and the
database. It is found from ``--workspace``, then ``OUTREACH_WORKSPACE``, then by walking up
from the current folder.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .config import CONFIG_FILE, Config, load_config
from .errors import ConfigError, UsageError
from .store import Store, open_store


def find_root(explicit: Path | None = None, start: Path | None = None) -> Path:
    """The workspace folder, by --workspace, OUTREACH_WORKSPACE, or walking up."""
    given = explicit or (
        Path(os.environ["OUTREACH_WORKSPACE"]) if os.environ.get("OUTREACH_WORKSPACE") else None
    )
    if given is not None:
        if not (given / CONFIG_FILE).is_file():
            raise ConfigError(
                f"{given}: not a workspace (no {CONFIG_FILE}); create one with: "
                f"outreach init {given}"
            )
        return given.resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise ConfigError(
        f"no {CONFIG_FILE} in {here} or any folder above it; create a workspace with "
        "`outreach init` or name one with --workspace DIR"
    )


@dataclass
class Workspace:
    """A loaded workspace: its configuration and, opened on first use, its store."""

    config: Config
    _store: Store | None = field(default=None, repr=False)
    # this process's row in the workers table while it holds a lease (sending/lease.py)
    worker_id: int | None = field(default=None, repr=False)

    @classmethod
    def load(cls, explicit: Path | None = None) -> Workspace:
        from . import clock

        config = load_config(find_root(explicit))
        clock.set_zone(config.timezone)
        return cls(config)

    @property
    def root(self) -> Path:
        return self.config.root

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.config.database)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def examples_dir() -> Path:
    """The example workspace shipped inside the package (templates, campaigns, toml)."""
    return Path(str(resources.files("outreach") / "examples"))


def init_workspace(folder: Path, *, force: bool = False) -> list[Path]:
    """Create a workspace with a commented outreach.toml, example templates and campaigns.

    Existing files are always kept (``force`` lets an existing workspace get the example
    files it lacks); returns what was written.
    """
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder}: exists and is not a folder; choose another path")
    if (folder / CONFIG_FILE).exists() and not force:
        raise UsageError(
            f"{folder / CONFIG_FILE} already exists; this is a workspace already "
            "(use --force to add missing example files)"
        )
    try:
        return _copy_examples(folder)
    except OSError as exc:
        where = exc.filename or folder
        raise UsageError(
            f"{where}: cannot create the workspace there ({exc.strerror or exc}); "
            "choose a folder you can write to"
        ) from None


# the README's tour works on these right after `outreach init`
SAMPLES = {
    "customers.csv": "demo/customers.csv",
    "replies.jsonl": "samples/replies.jsonl",
    "shipped.csv": "samples/shipped.csv",
}


def _copy_examples(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    source = examples_dir()
    written: list[Path] = []
    for name, sample in SAMPLES.items():
        if not (folder / name).exists():
            shutil.copyfile(source / sample, folder / name)
            written.append(folder / name)
    for item in ("outreach.toml", "templates", "campaigns"):
        src = source / item
        dst = folder / item
        if src.is_dir():
            for file in sorted(src.rglob("*")):
                if file.is_file():
                    target = dst / file.relative_to(src)
                    if not target.exists():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(file, target)
                        written.append(target)
        elif not dst.exists():
            shutil.copyfile(src, dst)
            written.append(dst)
    gitignore = folder / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(
            "outreach.db*\noutbox/\n.outreach.lock\n.outreach-journal/\n", encoding="utf-8"
        )
        written.append(gitignore)
    return written
