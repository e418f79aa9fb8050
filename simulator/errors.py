"""The one error users see for bad input: which file, which field, which rule."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .fields import Ref

if TYPE_CHECKING:
    from pydantic import ValidationError


class InputError(Exception):
    """Bad input. The CLI prints `file: field: rule` and exits with code 2."""

    def __init__(self, file: str, field: str, rule: str):
        self.file, self.field, self.rule = str(file), field, rule
        super().__init__(self.file, field, rule)  # args rebuild it: SimPy re-raises a failed process's error as type(e)(*e.args)

    def __str__(self) -> str:
        parts = (self.file, self.field, self.rule) if self.field else (self.file, self.rule)
        return ": ".join(printable(p) for p in parts)


def printable(text: str) -> str:
    """Text with every character that is not printable (newlines, terminal escapes, bidirectional
    overrides) written as its Python escape, so a message stays one line and shows what was typed."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def check_out_folder(out) -> None:
    """Refuse an --out that cannot become a folder (it, or a folder above it, is a file), before any work;
    no --out (None) is fine."""
    from pathlib import Path

    if out is None:
        return
    out = Path(out)
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                raise InputError(out, "", "--out must be a folder" + ("" if p == out else f" ({p} is a file)"))
            return


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


def from_validation(exc: ValidationError, data: dict, source) -> InputError:
    """The InputError of a failed scenario validation: the first field's error, at the path the user wrote."""
    errors = exc.errors()
    first = _field_path(errors[0]["loc"], data, errors[0]["type"]).split(".")

    def rank(e: dict) -> tuple:
        # Of the first field's errors, the union branch that got furthest into the input.
        parts = _field_path(e["loc"], data, e["type"]).split(".")
        return (parts[: len(first)] == first, len(parts), len(e["loc"]), not e["type"].endswith("_type"))

    err = max(errors, key=rank)
    loc = _field_path(err["loc"], data, err["type"])
    ctx = err.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, Ref):
        return InputError(source, cause.field if loc == "top level" else f"{loc}.{cause.field}", cause.rule)
    msg = str(cause) if isinstance(cause, ValueError) else err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required field is missing"
    paths = {tuple(_field_path(e["loc"], data, e["type"]).split(".")) for e in errors}
    shown = tuple(loc.split("."))
    more = sum(1 for p in paths if p != shown[: len(p)])  # not this field or the union holding it
    if more > 0:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return InputError(source, loc, msg)


def _field_path(loc: tuple, data: Any, error_type: str) -> str:
    """The path the user wrote, without pydantic's union-branch labels."""
    parts, node = [], data
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            parts.append(str(part))
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            parts.append(str(part))
            node = node[part]
        elif i == len(loc) - 1 and isinstance(node, dict) and error_type == "missing":
            parts.append(str(part))  # a missing key at the end of the path
            node = None
    return ".".join(parts) or "top level"


def one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
