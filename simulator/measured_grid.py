"""A measured latency grid: one <model>.csv of a profile folder, read and interpolated.

Exact at grid points, linear between them along each axis (trilinear: the batch and query
brackets weigh four context rows, each interpolated by numpy's interp; the same interpolant as
scipy's RegularGridInterpolator, at a few microseconds a call instead of hundreds, since a
simulation asks thousands of times), never assumed monotone; outside the grid the documented
scalings of profiles.py, each reported as a warning.
"""

from __future__ import annotations

import bisect
import csv
import functools
import io
from pathlib import Path

import numpy as np

from .errors import InputError
from .formats import PROFILE_CSV_COLUMNS as CSV_COLUMNS
from .formats import read_input


MEMO_ENTRIES = 20_000  # lookups kept per grid file: tables of a few thousand contexts, single prefill points


class Grid:
    """A measured grid over (batch, query, context), interpolated linearly inside it."""

    def __init__(self, path: Path, label: str, warnings: dict[str, str]):
        self.label, self.warnings = label, warnings
        stat = path.stat() if path.is_file() else None
        self.batches, self.queries, self.contexts, self.values, self.filled, self._memo = _load(
            path, stat and (stat.st_mtime_ns, stat.st_size))
        self._axes = [self.batches.tolist(), self.queries.tolist()]
        self._pending: list[tuple[str, str]] = []

    def _interp(self, b: float, q: float, contexts: np.ndarray) -> np.ndarray:
        """Trilinear interpolation at batch b and query q (inside the grid) over clipped contexts."""
        out = np.zeros(len(contexts))
        for i, wb in _bracket(self._axes[0], b):
            for j, wq in _bracket(self._axes[1], q):
                out += (wb * wq) * np.interp(contexts, self.contexts, self.values[i, j])
        return out

    @staticmethod
    def _fill_large_queries(values: np.ndarray, axes: list[np.ndarray], path: Path) -> np.ndarray:
        """A grid may stop short of its largest query sizes at large batches (a forward of more
        tokens than a step's budget is not measured): per batch, the missing query sizes must be the
        largest ones, missing at every context; each is filled in proportion to its tokens from the
        largest measured query at the same batch and context (compute-bound there). Returns the mask
        of filled (batch, query)."""
        missing = np.isnan(values)
        gone = missing.all(axis=2)  # (batch, query) not measured at any context
        for bi in range(len(axes[0])):
            top = len(axes[1]) - int(gone[bi, ::-1].cumprod().sum()) - 1  # last query before the gap
            holes = np.argwhere(missing[bi, : top + 1])
            if top < 0 or len(holes):
                qi, ci = holes[0] if len(holes) else (0, 0)
                raise InputError(path, "rows", f"the grid must hold every (batch, query_tokens, context_tokens) "
                                 f"combination of its values, or stop at a largest query size per batch; missing "
                                 f"({axes[0][bi]:g}, {axes[1][qi]:g}, {axes[2][ci]:g})")
            values[bi, top + 1:] = values[bi, top][None, :] * (axes[1][top + 1:] / axes[1][top])[:, None]
        return gone

    def __call__(self, batch: int, query: int, contexts: np.ndarray) -> np.ndarray:
        """Milliseconds of forwards of `batch` x `query` tokens at each of `contexts` (a read-only
        array). Computed once per process for each (batch, query, contexts) and grid file, since
        every trial of a plan asks again; the warnings of a lookup are given again each time."""
        contexts = np.asarray(contexts, dtype=float)
        key = (batch, query, contexts.tobytes())
        hit = self._memo.get(key)
        if hit is None:
            if len(self._memo) >= MEMO_ENTRIES:
                self._memo.clear()
            self._pending = []
            ms = self._compute(batch, query, contexts)
            ms.flags.writeable = False
            hit = self._memo[key] = (ms, tuple(self._pending))
        for kind, text in hit[1]:
            self.warnings[f"{self.label}:{kind}"] = f"{self.label}: {text}"
        return hit[0]

    def _compute(self, batch: int, query: int, contexts: np.ndarray) -> np.ndarray:
        b = min(max(batch, self.batches[0]), self.batches[-1])
        q = min(max(query, self.queries[0]), self.queries[-1])
        if self.filled.any():
            bi, qi = np.searchsorted(self.batches, b), np.searchsorted(self.queries, q)
            if self.filled[bi, qi] or (bi and self.filled[bi - 1, qi]) or (qi and self.filled[bi, qi - 1]):
                self._warn("tokens_budget", f"batch {batch} x query {query}: beyond the tokens measured at this "
                           "batch; scaled by token count from the largest measured query size")
        scale = (batch / b if batch > b else 1.0) * (query / q if query > q else 1.0)
        if batch < self.batches[0] or query < self.queries[0]:
            self._warn("tokens_lo", f"batch {batch} x query {query} below the measured grid (min batch "
                       f"{self.batches[0]:g}, query {self.queries[0]:g}): used the smallest measured size")
        if scale != 1.0:
            self._warn("tokens", f"batch {batch} x query {query} beyond the measured grid (max batch "
                       f"{self.batches[-1]:g}, query {self.queries[-1]:g}): scaled by token count")
        c_lo, c_hi = self.contexts[0], self.contexts[-1]
        clipped = np.clip(contexts, c_lo, c_hi)
        ms = self._interp(b, q, clipped)
        if contexts.size and contexts.max() > c_hi and len(self.contexts) == 1:
            self._warn("context_hi", f"context up to {contexts.max():g} beyond the measured grid (only "
                       f"{c_hi:g}): held at the measured value")
        elif contexts.size and contexts.max() > c_hi:
            c_prev = self.contexts[-2]
            ends = self._interp(b, q, np.array([c_prev, c_hi]))
            slope = max(0.0, (ends[1] - ends[0]) / (c_hi - c_prev))
            ms = ms + np.maximum(contexts - c_hi, 0) * slope
            self._warn("context_hi", f"context up to {contexts.max():g} beyond the measured grid (max "
                       f"{c_hi:g}): extrapolated linearly from the last two context points")
        if contexts.size and contexts.min() < c_lo:
            self._warn("context_lo", f"context below the measured grid (min {c_lo:g}): "
                       "used the smallest measured context")
        return ms * scale

    def _warn(self, kind: str, text: str) -> None:
        self._pending.append((kind, text))


@functools.lru_cache(maxsize=64)
def _load(path: Path, version) -> tuple:
    """(batches, queries, contexts, values, filled) of a grid CSV, read once per process while the
    file is unchanged (`version`: its mtime and size): a plan or sweep opens its profile for every
    trial."""
    rows = _read_grid_csv(path)
    axes = [np.unique(rows[:, i]) for i in range(3)]
    values = np.full([len(a) for a in axes], np.nan)
    idx = [np.searchsorted(a, rows[:, i]) for i, a in enumerate(axes)]
    values[tuple(idx)] = rows[:, 3]
    filled = Grid._fill_large_queries(values, axes, path)
    for a in (*axes, values, filled):
        a.flags.writeable = False
    return (*axes, values, filled, {})  # the last: lookups already made (Grid.__call__)


def _bracket(axis: list[float], x: float) -> list[tuple[int, float]]:
    """The grid indices around x on a sorted axis and their linear weights (one index at a point)."""
    i = bisect.bisect_right(axis, x) - 1
    if i >= len(axis) - 1 or axis[i] == x:
        return [(min(i, len(axis) - 1), 1.0)]
    w = (x - axis[i]) / (axis[i + 1] - axis[i])
    return [(i, 1.0 - w), (i + 1, w)]


def _read_grid_csv(path: Path) -> np.ndarray:
    reader = csv.DictReader(io.StringIO(read_input(path, "profile CSV"), newline=""))
    try:
        return _parse_grid_csv(path, reader)
    except csv.Error as exc:
        raise InputError(path, f"line {reader.line_num + 1}", csv_rule(exc)) from None  # the line it stopped in


def csv_rule(exc: csv.Error) -> str:
    """The rule of the csv module's error: its field-size limit (128 KiB) named, else its words."""
    if "field larger than field limit" in str(exc):
        return f"a field longer than {csv.field_size_limit() // 1024} KiB, the limit of a CSV field"
    return f"not valid CSV: {exc}"


def _parse_grid_csv(path: Path, reader: csv.DictReader) -> np.ndarray:
    missing = [c for c in CSV_COLUMNS[:4] if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(path, "header", f"missing column(s) {', '.join(missing)}")
    rows, seen = [], {}
    for row in reader:
        line = reader.line_num
        if None in row or None in row.values():
            raise InputError(path, f"line {line}", f"has {'more' if None in row else 'fewer'} fields than "
                             "the header")
        try:
            vals = [float(row[c]) for c in CSV_COLUMNS[:4]]
        except (TypeError, ValueError):
            raise InputError(path, f"line {line}", "batch, query_tokens, context_tokens and "
                             "latency_ms_p50 must be numbers") from None
        if not np.isfinite(vals).all() or vals[0] < 1 or vals[1] < 1 or vals[2] < 0 or not vals[3] > 0:
            raise InputError(path, f"line {line}", "needs finite numbers with batch >= 1, query_tokens >= 1, "
                             "context_tokens >= 0 and latency_ms_p50 > 0")
        point = tuple(vals[:3])
        if point in seen and rows[seen[point][1]][3] != vals[3]:
            raise InputError(path, f"line {line}", f"point ({', '.join(f'{v:g}' for v in point)}) is measured again "
                             f"(first on line {seen[point][0]}) with another latency_ms_p50")
        seen.setdefault(point, (line, len(rows)))
        rows.append(vals)
    if not rows:
        raise InputError(path, "rows", "no measurements")
    return np.array(rows)

