"""Usage errors of the command line (an unknown option, a value of the wrong type, a missing
argument) end as bad input does: one line `error: COMMAND: OPTION: RULE` on stderr and exit code 2,
not click's usage box. Typer ships its own copy of click, whose exceptions are typer.TyperException."""

from __future__ import annotations

import sys
from contextlib import contextmanager

import typer
from typer.core import TyperGroup

from .errors import InputError, one_line


class Commands(TyperGroup):
    """Usage errors (an unknown option, a value of the wrong type, a missing argument) end as bad input
    does: one line `error: COMMAND: OPTION: RULE` on stderr and exit code 2, not click's usage box."""

    def parse_args(self, ctx, args):
        with _usage_errors():
            return super().parse_args(ctx, args)

    def invoke(self, ctx):
        with _usage_errors():
            return super().invoke(ctx)


@contextmanager
def _usage_errors():
    try:
        yield
    except typer.TyperException as exc:  # click's exceptions, as typer ships them
        if type(exc).__name__ == "NoArgsIsHelpError" or not hasattr(exc, "format_message"):
            raise  # `specsim` alone prints the help
        where = exc.ctx.command_path if getattr(exc, "ctx", None) else "specsim"
        param = getattr(exc, "param", None)
        field = getattr(exc, "option_name", None) or (param.opts[0] if param is not None and param.opts else "")
        plain = isinstance(exc, typer.BadParameter) and type(exc).__name__ != "MissingParameter"
        rule = one_line(exc.message if plain else exc.format_message()).rstrip(".")
        sys.stderr.write(f"error: {InputError(where, field, f'{rule} (see {where} --help)')}\n")
        raise typer.Exit(2) from None
