"""The project's Llama split by layers into pipeline stages over a torch.distributed group, one
stage a rank: what the simulator's `pipeline` strategy (strategies/pipeline.py) is checked against.

Stage s of n holds decoder blocks s*L/n..(s+1)*L/n - 1 (with their KV cache); the first also the
embedding, the last the final norm and the LM head. A forward runs on rank 0 through its blocks,
sends the activations (tokens x hidden in the model's dtype) to rank 1, and so on; the last rank
sends the next-token ids back to rank 0, where the decoding loop (runner.py) runs with the draft.
Each stage's own forward runs through its executor (eager, or replayed from CUDA graphs); the
sends and receives between them run eagerly around the replays. `from_full` takes a whole model's
blocks, so the stages compute what the whole model does (tests/test_pp_runner.py, on CPU with gloo).
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.distributed as dist

from ..catalog import Architecture, split_layers
from .llama import Llama


def blocks(arch: Architecture, stage: int, n: int) -> range:
    """The decoder blocks of `stage` of n, split as the simulator's `pipeline` splits by default."""
    sizes = split_layers(arch.layers, n)
    first = sum(sizes[:stage])
    return range(first, first + sizes[stage])


class StageLlama(Llama):
    def __init__(self, arch: Architecture, stage: int, n: int, *, full: Llama | None = None, **kw):
        mine = blocks(arch, stage, n)
        super().__init__(replace(arch, layers=len(mine)), **kw)
        self.whole_arch, self.stage, self.n = arch, stage, n
        self.first, self.last = stage == 0, stage == n - 1
        if full is not None:
            self.embed, self.lm_head = full.embed, full.lm_head
            self.layers = [full.layers[i] for i in mine]

    def _embed(self, tokens):
        return super()._embed(tokens) if self.first else tokens

    def _out(self, x, greedy: bool):
        return super()._out(x, greedy) if self.last else x

    def input_like(self, batch: int, query: int) -> torch.Tensor:
        if self.first:
            return super().input_like(batch, query)
        return torch.zeros((batch, query, self.arch.hidden), device=self.device, dtype=self.dtype)


class StagedTarget:
    """Rank 0's handle on a pipelined target, usable wherever the decoding loops take an executor:
    each call runs stage 0's forward, sends its shape, position and activations to rank 1, and
    receives the next-token ids from the last rank; `close` releases the other stages."""

    def __init__(self, ex, n: int):
        self.ex, self.model, self.mode, self.n = ex, ex.model, ex.mode, n

    @property
    def captures(self) -> int:
        return self.ex.captures

    def _header(self, *values) -> None:
        dist.send(torch.tensor(values, dtype=torch.long, device=self.model.device), 1)

    def __call__(self, tokens: torch.Tensor, start: int) -> torch.Tensor:
        x = self.ex(tokens, start)
        self._header(tokens.shape[0], tokens.shape[1], start, 1)
        dist.send(x.contiguous(), 1)
        ids = torch.empty(tokens.shape, dtype=torch.long, device=self.model.device)
        dist.recv(ids, self.n - 1)
        return ids

    def close(self) -> None:
        self._header(0, 0, 0, 0)


def follow_stage(ex, rank: int, n: int) -> int:
    """On rank 1..n-1: run this stage's forward on what the stage before sends, pass the result on (the
    last stage: the next-token ids back to rank 0), until rank 0 closes; returns how many ran."""
    m, ran = ex.model, 0
    while True:
        header = torch.empty(4, dtype=torch.long, device=m.device)
        dist.recv(header, rank - 1)
        batch, query, start, go = header.tolist()
        if rank < n - 1:
            dist.send(header, rank + 1)
        if not go:
            return ran
        x = torch.empty((batch, query, m.arch.hidden), dtype=m.dtype, device=m.device)
        dist.recv(x, rank - 1)
        out = ex(x, start)
        dist.send(out.contiguous(), 0 if rank == n - 1 else rank + 1)
        ran += 1


def link_from_sends(table: dict) -> dict:
    """A scenario link (bandwidth_mbps, latency_ms, header_bytes 0) fitted to measured sends between
    two stages' GPUs ({bytes: [...], ms: [...]}, as tools/tp_campaign.py's p2p.yaml): time = latency +
    bytes / bandwidth by least squares, the latency kept at 0 or more."""
    import numpy as np

    b, ms = np.asarray(table["bytes"], float), np.asarray(table["ms"], float)
    slope, latency = np.polyfit(b, ms, 1) if len(b) > 1 else (0.0, ms[0])
    if latency < 0:  # through the origin instead
        slope, latency = float(b @ ms / (b @ b)), 0.0
    bandwidth = 8e-3 / slope if slope > 0 else float("inf")  # ms a byte -> Mbit/s
    return {"bandwidth_mbps": float(bandwidth), "latency_ms": float(latency), "header_bytes": 0}
