"""How forward passes execute: eagerly, or replayed from CUDA graphs as serving engines decode.

An executor runs one model: `ex(tokens, start)` returns next-token ids [B, Q] (greedy) for
`tokens` [B, Q] at positions start.. of every row. The decoding loops (runner.py) and the
profile measurement (measure.py) are written once against this interface.

- `Eager`: the model's own forward, one kernel launch per operation, shapes as they come.
- `Graphs`: the static-shape forward (`Llama.forward_at`), captured once per shape
  (batch, query tokens, attention span) into a CUDA graph and replayed. The span is the
  context rounded up to `BUCKET` slots (vLLM's KV-cache block is 16 tokens): attention reads
  up to BUCKET - 1 masked slots more than a kernel that reads the exact context would. All
  graphs of a model share one memory pool (they never run concurrently; each output is
  cloned before the next replay), as engines share theirs. On a CPU nothing is captured:
  the same static-shape forward runs directly, so the loops' bookkeeping is testable there
  and gives the same tokens.
"""

from __future__ import annotations

import torch

from .llama import Llama

BUCKET = 16  # attention span granularity, in cache slots


def span(end: int, max_len: int) -> int:
    """Cache slots a forward ending at position `end` attends over (a multiple of BUCKET)."""
    return min(max_len, -(-end // BUCKET) * BUCKET)


class Eager:
    mode = "eager"

    def __init__(self, model: Llama):
        self.model = model
        self.captures = 0

    def __call__(self, tokens: torch.Tensor, start: int) -> torch.Tensor:
        return self.model(tokens, start, greedy=True)


class Graphs:
    """One CUDA graph per (batch, query, span), captured on first use or ahead by `prepare`."""

    mode = "graph"

    def __init__(self, model: Llama):
        self.model = model
        self.cuda = model.device.type == "cuda"
        self.pool = torch.cuda.graph_pool_handle() if self.cuda else None
        self._graphs: dict[tuple[int, int, int], tuple] = {}
        self.captures = 0  # graphs captured so far (a run compares this before and after itself)

    def __call__(self, tokens: torch.Tensor, start, top: int | None = None) -> torch.Tensor:
        """`start`: one position for every row (an int), or one per row (a [B] tensor on the device,
        with `top` its largest value, known on the host: reading it back would synchronise)."""
        B, Q = tokens.shape[:2]
        per_row = isinstance(start, torch.Tensor)
        s = span((top if per_row else start) + Q, self.model.max_len)
        if not self.cuda:
            starts = start if per_row else torch.full((B,), start, device=self.model.device)
            return self.model.forward_at(tokens, starts, s)
        entry = self._graphs.get((B, Q, s)) or self._capture(B, Q, s)
        graph, tok, starts, out = entry
        tok.copy_(tokens)
        if per_row:
            starts.copy_(start)
        else:
            starts.fill_(start)
        graph.replay()
        return out.clone()  # the next replay of this graph overwrites `out`

    def prefill(self, tokens: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Next-token ids of k prompts [k, P] prefilled into cache rows `rows` (Llama.prefill_rows),
        replayed from a graph per (k, P)."""
        if not self.cuda:
            return self.model.prefill_rows(tokens, rows)
        key = ("prefill", *tokens.shape)
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._graphs[key] = self._record(lambda t, r: self.model.prefill_rows(t, r), tokens.clone(),
                                                     rows.clone())
        graph, tok, where, out = entry
        tok.copy_(tokens)
        where.copy_(rows)
        graph.replay()
        return out.clone()

    def prepare(self, batch: int, query: int, end: int) -> tuple:
        """Capture the graph a forward of `query` tokens ending at position `end` replays."""
        s = span(end, self.model.max_len)
        return self._graphs.get((batch, query, s)) or self._capture(batch, query, s)

    def replay(self, batch: int, query: int, start: int) -> None:
        """Replay the graph of this shape at `start` with whatever tokens it holds (for timing)."""
        graph, _, starts, _ = self.prepare(batch, query, start + query)
        starts.fill_(start)
        graph.replay()

    def drop(self) -> None:
        """Forget every graph (and their pool: a pool outlives its graphs only empty)."""
        self._graphs.clear()
        self.pool = torch.cuda.graph_pool_handle() if self.cuda else None

    def _capture(self, B: int, Q: int, s: int) -> tuple:
        m = self.model
        if not self.cuda:
            raise RuntimeError("CUDA graphs need a CUDA device")
        tok = m.input_like(B, Q)
        starts = torch.full((B,), max(0, s - Q), device=m.device, dtype=torch.long)
        self._graphs[(B, Q, s)] = entry = self._record(lambda t, st: m.forward_at(t, st, s), tok, starts)
        return entry

    def _record(self, fn, *inputs) -> tuple:
        """(graph, *inputs, output) of fn(*inputs) captured once, after a warm-up run on a side stream."""
        dev = self.model.device
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):  # warm-up outside the capture, as torch.cuda.graphs asks
            fn(*inputs)
        torch.cuda.current_stream(dev).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = fn(*inputs)
        self.captures += 1
        return (graph, *inputs, out)


def executor(model: Llama, mode: str):
    """The executor of `mode` (graph or eager) for a model."""
    if mode not in ("graph", "eager"):
        raise ValueError(f"mode must be graph or eager, not {mode!r}")
    return Graphs(model) if mode == "graph" else Eager(model)
