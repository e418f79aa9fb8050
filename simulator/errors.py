"""The one error users see for bad input: which file, which field, which rule."""

from __future__ import annotations


class InputError(Exception):
    """Bad input. The CLI prints `file: field: rule` and exits with code 2."""

    def __init__(self, file: str, field: str, rule: str):
        self.file, self.field, self.rule = str(file), field, rule
        super().__init__(f"{self.file}: {field}: {rule}" if field else f"{self.file}: {rule}")
