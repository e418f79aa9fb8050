"""What a run keeps when no records are asked for: only what the report needs, streamed.

A run that writes no requests.csv, steps.csv or batches.csv (`specsim run` without --out, every
sweep run and plan trial) keeps no step or batch rows and no RequestRecord per request:

  steps      Discard: its `append` drops the row (the processes append a row per step either way;
             the report reads a request's step counts from the request itself)
  batches    BatchTotals: the sums behind the report's `batching` block, added per batch step
  requests   RequestColumns: per request only the four numbers its latency percentiles and SLO
             figures need (arrival, first token, finish, output tokens: 28 bytes), in id order,
             and the sums of steps, drafted and accepted over the requests

Exact percentiles need every request's value, so the columns grow by 28 bytes a request (28 MB
for a million) where the records and their steps took about a kilobyte; the report is the same
figure for figure either way (tests/test_lean_runs.py), as both build the same arrays in the same
order. Plain code: no SimPy here.
"""

from __future__ import annotations

from array import array

import numpy as np


class Discard:
    """A step log that keeps nothing: the processes' `steps.append(row)` costs a call and no memory."""

    __slots__ = ()

    def append(self, row) -> None:
        pass


class BatchTotals:
    """A batching server's steps, summed as metrics' `batching` block needs them: steps, decoding steps
    (a batch of at least one request decoding), requests decoding summed over them, tokens drafted."""

    __slots__ = ("steps", "decoding_steps", "decoding", "drafted")

    def __init__(self) -> None:
        self.steps = self.decoding_steps = self.decoding = self.drafted = 0

    def append(self, row: tuple) -> None:
        """Add one batch step, a row in records.BatchRecord's field order."""
        _, _, batch, _, drafted, *_ = row
        self.steps += 1
        if batch > 0:
            self.decoding_steps += 1
            self.decoding += batch
        self.drafted += drafted

    @classmethod
    def of(cls, rows) -> BatchTotals:
        totals = cls()
        for row in rows:
            totals.append(row)
        return totals


class RequestColumns:
    """Per request, in id order: arrival_s, first_token_s, finish_s and output_tokens as numpy arrays
    (read them after the run); over the requests, the sums of steps, drafted and accepted."""

    def __init__(self) -> None:
        self._arrival, self._first, self._finish, self._output = array("d"), array("d"), array("d"), array("i")
        self.steps = self.drafted = self.accepted = 0

    def open(self, rec) -> None:
        """A request arrives (ids are issued in order: request i is the i-th opened)."""
        assert rec.id == len(self._arrival), "requests are opened in id order"
        self._arrival.append(rec.arrival_s)
        self._first.append(rec.first_token_s)
        self._finish.append(rec.finish_s)
        self._output.append(rec.output_tokens)

    def close(self, rec) -> None:
        """A request is done: keep its times and counts; the record itself can go."""
        self._first[rec.id], self._finish[rec.id] = rec.first_token_s, rec.finish_s
        self.steps += rec.steps
        self.drafted += rec.drafted
        self.accepted += rec.accepted

    def __len__(self) -> int:
        return len(self._arrival)

    @property
    def arrival_s(self) -> np.ndarray:
        return np.frombuffer(self._arrival, dtype=float) if len(self) else np.array([])

    @property
    def first_token_s(self) -> np.ndarray:
        return np.frombuffer(self._first, dtype=float) if len(self) else np.array([])

    @property
    def finish_s(self) -> np.ndarray:
        return np.frombuffer(self._finish, dtype=float) if len(self) else np.array([])

    @property
    def output_tokens(self) -> np.ndarray:
        return np.frombuffer(self._output, dtype=np.intc).astype(int) if len(self) else np.array([], dtype=int)

    def last_finish_s(self) -> float:
        """The time the last request finished (0 with none), as max() over the records gives it."""
        return max(self._finish, default=0.0)

    @classmethod
    def of(cls, records) -> RequestColumns:
        """The columns of kept records (in the order kept: id order)."""
        cols = cls()
        for rec in records:
            cols.open(rec)
            cols.close(rec)
        return cols
