"""The ``calcscope`` command: a thin shell over the Python API.

Each sub-command lives in its own module in this package and registers itself on
:data:`app` through a ``register(app)`` function; :data:`COMMAND_MODULES` lists
them explicitly. Errors derived from :class:`calcscope.errors.CalcscopeError` are
printed as one paragraph and exit with the error's own code; anything else is an
internal error (exit 70) whose traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import importlib
import sys

import typer

from ..errors import CalcscopeError
from ._common import STATE, err_console

__all__ = ["app", "main", "COMMAND_MODULES"]

app = typer.Typer(
    name="calcscope",
    help="Find, measure, reason about and follow liver calcifications and lesions on CT. "
    "Decision support only: not a diagnostic device.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: sub-command modules, in help order
COMMAND_MODULES = ("_info", "_analyze", "_demo", "_synth", "_evaluate", "_reason", "_schema", "_compare")


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"calcscope {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
    ),
) -> None:
    STATE["debug"] = debug


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            # A command module not written yet; any other missing module is a real error.
            if exc.name != f"{__name__}.{name}":
                raise
            continue
        mod.register(app)


_register_all()

INTERNAL_ERROR_EXIT = 70


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    STATE["debug"] = "--debug" in args
    try:
        app(args=args, standalone_mode=False)
    except CalcscopeError as exc:
        if STATE["debug"]:
            raise
        err_console.print(f"[bold red]calcscope: {type(exc).__name__}[/]: {exc.paragraph()}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        err_console.print("calcscope: aborted.")
        return 130
    except typer.TyperException as exc:  # command-line usage errors (unknown option, missing argument)
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            err_console.print(f"calcscope: {exc.format_message()}", highlight=False)
        return exc.exit_code
    except Exception as exc:  # genuine bugs
        if STATE["debug"]:
            raise
        err_console.print(
            f"[bold red]calcscope: internal error[/]: {type(exc).__name__}: {exc}. "
            "This is a bug in calcscope, not in your data. Re-run with --debug for the full "
            "traceback and report it.",
            highlight=False,
            soft_wrap=True,
        )
        return INTERNAL_ERROR_EXIT
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
