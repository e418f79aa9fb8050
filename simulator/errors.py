"""The one error users see for bad input: which file, which field, which rule."""

from __future__ import annotations


class InputError(Exception):
    """Bad input. The CLI prints `file: field: rule` and exits with code 2."""

    def __init__(self, file: str, field: str, rule: str):
        self.file, self.field, self.rule = str(file), field, rule
        super().__init__(f"{self.file}: {field}: {rule}" if field else f"{self.file}: {rule}")


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
