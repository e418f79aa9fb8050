"""Acceptance models: how many of `gamma` drafted tokens the target accepts in one step.

Each model gives the exact distribution (and so the exact mean) of the accepted count K for a
given gamma, so tests can hold sample means against theory. Plain code: no SimPy here.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .errors import InputError
from .formats import read_input
from .measured_grid import csv_rule

BLOCK = 4096  # draws made at once per gamma, to keep the hot path free of numpy calls


class Acceptance:
    """Draws accepted counts; `pmf(gamma)[k]` = P(K = k) for k = 0..gamma."""

    def __init__(self, survival, rng: np.random.Generator):
        self._survival = survival  # gamma -> P(K >= j) for j = 0..gamma
        self._rng = rng
        self._blocks: dict[int, list[int]] = {}
        self._tails: dict[int, np.ndarray | None] = {}  # top -> -P(K >= j), j = 1..top, where that is sorted

    def pmf(self, gamma: int) -> np.ndarray:
        s = np.append(np.asarray(self._survival(gamma), dtype=float), 0.0)
        return s[:-1] - s[1:]

    def mean_accepted(self, gamma: int) -> float:
        """E[K] = sum over j = 1..gamma of P(K >= j)."""
        return float(np.sum(np.asarray(self._survival(gamma))[1:]))

    def survival(self, gamma: int) -> np.ndarray:
        """P(K >= j) for j = 0..gamma."""
        return np.asarray(self._survival(gamma), dtype=float)

    def with_survival(self, survival) -> Acceptance:
        """Another distribution drawn from this one's Generator (its stream, in turn)."""
        return Acceptance(survival, self._rng)

    def child_rng(self) -> np.random.Generator:
        """An independent Generator spawned from this one's seed; draws from it leave this one's alone."""
        return self._rng.spawn(1)[0]

    def draw(self, gamma: int) -> int:
        block = self._blocks.get(gamma)
        if not block:
            cdf = np.cumsum(self.pmf(gamma))
            u = self._rng.random(BLOCK)
            # reversed so that list.pop() hands them out in drawing order
            block = self._blocks[gamma] = np.minimum(np.searchsorted(cdf, u, side="right"), gamma)[::-1].tolist()
        return block.pop()

    def draw_many(self, gammas: np.ndarray, top: int | None = None) -> np.ndarray:
        """One accepted count per entry of gammas, for a batch: K_i = #{j >= 1: u_i < P(K >= j)}
        (inverse-CDF sampling; P(K >= j) does not depend on gamma for j <= gamma), capped at gamma_i.
        `top`, the largest of gammas, when the caller knows it (a reduction costs more than the draw)."""
        if top is None:
            top = int(gammas.max(initial=0))
        if top == 0:
            return np.zeros(gammas.size, np.int64)
        if top not in self._tails:
            tail = -self.survival(top)[1:]
            self._tails[top] = tail if bool(np.all(tail[:-1] <= tail[1:])) else None
        u = self._rng.random(gammas.size)
        tail = self._tails[top]
        if tail is None:  # not monotone (no model here makes one): count the crossings one by one
            return np.minimum(np.add.reduce(u[:, None] < -self.survival(top)[1:], axis=1), gammas)
        # #{j: u < P(K >= j)} = #{j: -P(K >= j) < -u}, a binary search when P(K >= j) falls with j
        return np.minimum(np.searchsorted(tail, -u), gammas)


class Replay:
    """Accepted counts replayed in order from a recorded trace (cyclically), clipped to gamma."""

    def __init__(self, counts: list[int]):
        self.counts = np.asarray(counts, dtype=int)
        self._i = 0

    def pmf(self, gamma: int) -> np.ndarray:
        return np.bincount(np.minimum(self.counts, gamma), minlength=gamma + 1) / len(self.counts)

    def mean_accepted(self, gamma: int) -> float:
        """Exact over whole passes of the trace."""
        return float(np.minimum(self.counts, gamma).mean())

    def draw(self, gamma: int) -> int:
        k = int(self.counts[self._i])
        self._i = (self._i + 1) % len(self.counts)
        return min(k, gamma)

    def draw_many(self, gammas: np.ndarray, top: int | None = None) -> np.ndarray:
        return np.array([self.draw(int(g)) if g else 0 for g in gammas], np.int64)


def conditional(survival) -> np.ndarray:
    """alpha_i = P(K >= i) / P(K >= i - 1) for i = 1..g, from P(K >= j), j = 0..g: the chance that
    draft i is accepted given that the i - 1 before it were (0 where P(K >= i - 1) is 0)."""
    s = np.asarray(survival, dtype=float)
    prev, cur = s[:-1], s[1:]
    return np.divide(cur, prev, out=np.zeros_like(cur), where=prev > 0)


def build(spec, rng: np.random.Generator) -> Acceptance | Replay:
    from . import scenario as sc  # here, not at the top: the strategies, which scenario imports, import this module
    if isinstance(spec, sc.Iid):
        a = spec.alpha
        return Acceptance(lambda g: a ** np.arange(g + 1), rng)
    if isinstance(spec, sc.PerPosition):
        alphas = list(spec.alphas)

        def survival(g: int) -> np.ndarray:
            per = [alphas[min(i, len(alphas) - 1)] for i in range(g)]
            return np.cumprod([1.0] + per)

        return Acceptance(survival, rng)
    if isinstance(spec, sc.Empirical):
        p = np.asarray(spec.counts, dtype=float) / sum(spec.counts)
        tail = np.cumsum(p[::-1])[::-1]  # P(K >= j) for j = 0..len-1

        def survival_emp(g: int) -> np.ndarray:
            return np.concatenate([tail, np.zeros(max(0, g + 1 - len(tail)))])[: g + 1]

        return Acceptance(survival_emp, rng)
    if isinstance(spec, sc.TraceAcceptance):
        return Replay(spec.counts if spec.counts is not None else read_trace(Path(spec.path)))
    raise TypeError(spec)


def thinned(model: Acceptance, factor: float) -> Acceptance:
    """Each drafted position accepted with `factor` times its probability: P(K >= j) x factor^j
    (a vocabulary bridge's loss), drawn from the same Generator."""
    def survival(g: int) -> np.ndarray:
        return model.survival(g) * factor ** np.arange(g + 1)

    return model.with_survival(survival)


def read_trace(path: Path) -> list[int]:
    """Accepted counts from a file: one integer per line, or a CSV with an 'accepted' column."""
    lines = read_input(path, "acceptance trace").splitlines()
    rows = [(n, ln) for n, ln in enumerate(lines, start=1) if ln.strip()]  # (line number, text)
    start, column = 0, None
    if rows and not rows[0][1].strip().lstrip("-").isdigit():
        header = _cells(path, rows[0])
        if "accepted" not in header:
            raise InputError(path, "header", "a CSV acceptance trace needs an 'accepted' column")
        start, column = 1, header.index("accepted")
    counts = []
    for n, row in rows[start:]:
        cells = _cells(path, (n, row)) if column is not None else [row]
        try:
            k = int(cells[0 if column is None else column])
        except (ValueError, IndexError):  # the cell is not echoed: the path may name any file
            raise InputError(path, f"line {n}", "accepted count must be an integer"
                             + (" in the 'accepted' column" if column is not None else "")) from None
        if k < 0:
            raise InputError(path, f"line {n}", "accepted count must be >= 0")
        counts.append(min(k, 2**31 - 1))  # clipped to gamma when replayed
    if not counts:
        raise InputError(path, "", "the acceptance trace is empty")
    return counts


def _cells(path: Path, numbered: tuple[int, str]) -> list[str]:
    n, text = numbered
    try:
        return next(csv.reader([text]))
    except csv.Error as exc:
        raise InputError(path, f"line {n}", csv_rule(exc)) from None
