"""Saving figures: a PNG is written whole or not at all (drawn to a temporary file, then renamed)."""

from __future__ import annotations

from pathlib import Path

from .outputs import file_in_place


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path) -> Path:
    try:
        with file_in_place(path) as tmp:
            fig.savefig(tmp, dpi=120)
    finally:
        pyplot().close(fig)
    return path
