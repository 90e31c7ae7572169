"""The root command: global options, command registration and the one error mapping.

Every command module is thin: parse options, call one domain function, render. Errors
a user can cause are ``OutreachError``s, turned here, and only here, into one line on
stderr and its exit code (README "Exit codes") (``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import copy
import signal
import sys
import traceback
from collections.abc import MutableMapping
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.main
from typer.core import TyperArgument, TyperGroup, TyperOption
from typer.models import TyperInfo

from ..errors import OutreachError, local_write_error
from . import campaigns as campaigns_cli
from . import conversations as conversations_cli
from . import export as export_cli
from . import mail as mail_cli  # noqa: F401 - adds replies sync to the replies group
from . import worker as worker_cli
from . import workspace as workspace_cli
from .options import State, state

if TYPE_CHECKING:
    import sqlite3

GLOBAL_OPTIONS = ("workspace", "now", "debug")

# metavars for value options whose name alone says little
METAVARS = {
    "now": "TIME",
    "since": "TIME",
    "until": "TIME",
    "occurrence": "TIME",
    "customer": "ID",
    "channel": "NAME",
    "where": "SQL",
    "id_column": "COLUMN",
    "limit": "N",
    "sample": "N",
    "wait": "SECONDS",
    "port": "PORT",
    "host": "HOST",
}


class OutreachGroup(TyperGroup):
    """The root group: the one error mapping (OutreachError to one stderr line and its exit
    code), and the help conventions every command shares."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        shared = [p for p in self.params if p.name in GLOBAL_OPTIONS]
        for command in self.commands.values():
            _share_options(command, shared)
        _tidy_help(self)

    def invoke(self, ctx: Any) -> Any:
        # here: `outreach --help` is answered before invoke, and needs no database
        import sqlite3

        try:
            try:
                return super().invoke(ctx)
            except (sqlite3.Error, OSError) as exc:
                known = _known_fault(exc, ctx.obj if isinstance(ctx.obj, State) else None)
                if known is None:
                    raise
                raise known from exc
            except Exception as exc:
                # a PostgreSQL fault no unit of work took care of (a server out of disk):
                # one line naming the database; psycopg is imported only if it was in use
                if not type(exc).__module__.startswith("psycopg"):
                    raise
                st = ctx.obj if isinstance(ctx.obj, State) else None
                database = st.loaded.config.database if st and st.loaded else None
                from ..store import store_fault

                raise store_fault(exc, database) from exc
        except OutreachError as exc:
            st = ctx.obj if isinstance(ctx.obj, State) else None
            if st is not None and st.debug:
                # the traceback, and still the exit code a script relies on
                traceback.print_exc()
            else:
                typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        finally:
            if isinstance(ctx.obj, State):
                ctx.obj.close()


def _apply_global(ctx: Any, param: Any, value: Any) -> Any:
    """A global option given after the command: the same effect as before it."""
    if value is None or value is False:
        return value
    st = state(ctx)
    if param.name == "workspace":
        st.workspace_path = value
    elif param.name == "debug":
        st.debug = True
    elif param.name == "now":
        st.set_now(value)
    return value


def _share_options(command: Any, shared: list[Any]) -> None:
    """Give every command the global options too, so that `run nps --now T` works as the
    README writes it: copies that only set the invocation's state."""
    if isinstance(command, LazyGroup) and not command.built:
        command.shared = shared  # for its commands, when it builds them
        return
    for sub in getattr(command, "commands", {}).values():
        _share_options(sub, shared)
    if getattr(command, "commands", None):
        return
    for option in shared:
        twin = copy.copy(option)
        twin.expose_value = False
        twin.callback = _apply_global
        command.params.append(twin)


def _plain_errors(process: Any) -> Any:
    """A bad value reads "'xml' is not one of 'csv', 'json'", without the "Value error, "
    prefix of typer's validation layer."""
    try:
        return process()
    except typer.BadParameter as exc:
        exc.message = exc.message.removeprefix("Value error, ")
        raise


class _Argument(TyperArgument):
    """An argument shown as NAME, [NAME] or NAME... in usage, without its type."""

    __slots__ = ()

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        name = name if self.required else f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")

    def _rich_display_name(self) -> str:
        return self.display_name_raw + ("..." if self.nargs != 1 else "")

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def process_value(self, ctx: Any, value: Any) -> Any:
        return _plain_errors(lambda: TyperArgument.process_value(self, ctx, value))


class _Option(TyperOption):
    """A value option shown with a word (TIME, FILE, csv|json), not a type name."""

    __slots__ = ()

    def display_type_rich(self, ctx: Any) -> str | None:
        if self.metavar is not None:
            return self.metavar
        desc = self.type_descriptor
        if desc.is_choice:
            return "|".join(str(getattr(c, "value", c)) for c in desc.choices or ())
        if desc.is_path:
            return "DIR" if desc.path_type == "dir" else "FILE"
        return METAVARS.get(self.name or "", (self.name or "value").upper())

    def process_value(self, ctx: Any, value: Any) -> Any:
        return _plain_errors(lambda: TyperOption.process_value(self, ctx, value))


def _tidy_help(command: Any) -> None:
    """Usage lines without type names, and one-liners that are whole sentences.

    typer builds the parameters itself and has no per-parameter class hook, so its own
    classes are swapped for the subclasses above (they add no state).
    """
    for param in command.params:
        if type(param) is TyperArgument:
            param.__class__ = _Argument
            if param.metavar is None:
                param.metavar = (param.name or "value").upper()
        elif type(param) is TyperOption:
            param.__class__ = _Option
    if command.help and not command.short_help:
        first = command.help.split("\n\n", 1)[0].replace("\n", " ").strip()
        command.short_help = first.split(". ", 1)[0].rstrip(".")
    if isinstance(command, LazyGroup) and not command.built:
        return  # it tidies its commands when it builds them
    for sub in getattr(command, "commands", {}).values():
        _tidy_help(sub)


class LazyGroup(TyperGroup):
    """A command group whose module (``cli/NAME.py``, its ``app``) is imported, and whose
    commands are built, when it is first used: to run or complete one of them, for its
    own --help, or by code that walks ``commands``. ``outreach --help`` needs only its name
    and help; importing and building these five groups was 13 % of its instructions.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.built = False
        self.shared: list[Any] = []
        super().__init__(*args, **kwargs)

    @property
    def commands(self) -> MutableMapping[str, Any]:
        if not self.built:
            self._commands = self._build()
            self.built = True
        return self._commands

    @commands.setter
    def commands(self, value: MutableMapping[str, Any]) -> None:
        self._commands = value

    def _build(self) -> MutableMapping[str, Any]:
        module = import_module(f"{__name__}.{self.name}")
        # as typer builds a group added with add_typer: with the root's settings
        group = typer.main.get_group_from_info(
            TyperInfo(module.app),
            pretty_exceptions_short=app.pretty_exceptions_short,
            suggest_commands=app.suggest_commands,
            rich_markup_mode=app.rich_markup_mode,
        )
        for command in group.commands.values():
            _share_options(command, self.shared)
            _tidy_help(command)
        return group.commands


def _add_lazy_group(name: str, help: str) -> None:
    """``outreach NAME``, a group of ``cli/NAME.py`` built on first use (``LazyGroup``);
    its help is here, where `outreach --help` reads it without importing the module."""
    app.add_typer(typer.Typer(cls=LazyGroup, help=help, no_args_is_help=True), name=name)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"outreach {version('outreach')}")
        raise typer.Exit(0)


def _known_fault(exc: sqlite3.Error | OSError, st: State | None) -> OutreachError | None:
    """A fault of the machine (a full disk, a damaged database) that escaped the command:
    the one line for it, naming the file; None for a bug."""
    import sqlite3  # here: as in OutreachGroup.invoke

    if isinstance(exc, sqlite3.Error):
        from ..store.sqlite import database_error

        database = None
        if st is not None and st.loaded is not None:
            database = st.loaded.config.database
        return database_error(exc, Path(database) if database else None)
    return local_write_error(exc, exc.filename or "a file outreach was writing")


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
            metavar="TIME",
            help="Pretend the time is this, for tests and what-if runs (also OUTREACH_NOW). "
            "Times without a zone, here and in every option, are workspace time; tables show "
            "local time with its zone, --json UTC.",
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Global options."""
    st = state(ctx)
    st.workspace_path = workspace
    st.debug = debug
    if now is not None:
        st.set_now(now)


workspace_cli.register(app)
_add_lazy_group("customers", "Import, list and show customers.")
_add_lazy_group("consent", "Grant, revoke and show channel consent (an append-only ledger).")
_add_lazy_group(
    "templates", "Check and preview message templates (templates/NAME/CHANNEL[.LOCALE].j2)."
)
_add_lazy_group("channels", "Check the configured channels and their providers.")
_add_lazy_group("store", "The workspace database itself.")
campaigns_cli.register(app)
worker_cli.register(app)
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
        app(prog_name="outreach")
    except KeyboardInterrupt:  # pragma: no cover - only reached outside commands
        sys.exit(130)
