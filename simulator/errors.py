"""The one error users see for bad input: which file, which field, which rule."""

from __future__ import annotations


class InputError(Exception):
    """Bad input. The CLI prints `file: field: rule` and exits with code 2."""

    def __init__(self, file: str, field: str, rule: str):
        self.file, self.field, self.rule = str(file), field, rule
        super().__init__(self.file, field, rule)  # args rebuild it: SimPy re-raises a failed process's error as type(e)(*e.args)

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.rule}" if self.field else f"{self.file}: {self.rule}"


def exits_on_input_error(command):
    """Wrap a CLI command: InputError prints `error: ...` on one line of stderr and exits with code 2."""
    import functools
    import sys

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except InputError as exc:
            import typer

            sys.stderr.write(f"error: {exc}\n")
            raise typer.Exit(2) from None

    return wrapper
