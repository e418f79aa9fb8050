"""CSV (one column per key) and YAML files written whole or not at all (to a temporary file, then renamed)."""

from __future__ import annotations

import csv
import math

from .outputs import file_in_place
from pathlib import Path


def columns(rows: list[dict]) -> list[str]:
    """Every key of the rows, in first-seen order."""
    return list(dict.fromkeys(k for row in rows for k in row))


def write_csv(path: Path, rows: list[dict], header: list[str] | None = None) -> Path:
    header = header or columns(rows)
    with file_in_place(path) as tmp, tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows([_cell(row.get(k)) for k in header] for row in rows)
    return path


def _cell(v):
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else v


def write_yaml(path: Path, data: dict) -> Path:
    import yaml

    with file_in_place(path) as tmp:
        tmp.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path
