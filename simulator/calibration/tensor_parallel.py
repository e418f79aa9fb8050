"""The project's Llama split over a torch.distributed group by tensor parallelism (Megatron-style),
and the all-reduce times of that group: what the simulator's tensor-parallel model
(simulator/tensor_parallel.py) is checked against.

Rank r of n holds heads r*H/n.. of every attention (its slice of the query, key and value columns
and the matching rows of the output projection), the r-th n-th of every MLP's gate, up and down
projections, the r-th n-th of the LM head's vocabulary, and the whole embedding. A block's two
output projections are summed over the group (two all-reduces a block, as the model counts), and
the logits gathered (as the model's half all-reduce). `from_full` slices a whole model's weights,
so a group computes what the whole model does (tests/test_tp_runner.py, on CPU with gloo); without
it each rank draws random weights of its shard's shape, as timing needs.

`allreduce_table` times one all-reduce of each size on the group (CUDA events on GPUs, the wall
clock on CPUs; median of `repeats` after warm-up), as the `allreduce` table of a device's
`interconnect` takes it: {bytes: [...], ms: [...]}.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.distributed as dist

from ..catalog import Architecture
from .llama import Llama


class ShardedLlama(Llama):
    def __init__(self, arch: Architecture, rank: int, n: int, *, full: Llama | None = None, **kw):
        super().__init__(arch.shard(n), **kw)
        self.full_arch, self.rank, self.n = arch, rank, n
        if full is None:  # the embedding stays whole: every rank looks up every token
            self.embed = torch.empty((arch.vocab, arch.hidden), device=self.device, dtype=self.dtype).normal_()
            return
        self.embed = full.embed.clone()
        hd, heads, kv, ffn, vocab = arch.head_dim, arch.heads // n, max(1, arch.kv_heads // n), arch.ffn // n, arch.vocab // n
        if arch.kv_heads % n or arch.ffn % n or arch.vocab % n:
            raise ValueError("from_full needs kv_heads, ffn and vocab divisible by the group's size")
        q0, k0 = arch.heads * hd, arch.kv_heads * hd
        for mine, whole in zip(self.layers, full.layers):
            w = whole["wqkv"]
            mine["wqkv"] = torch.cat([w[:, rank * heads * hd:(rank + 1) * heads * hd],
                                      w[:, q0 + rank * kv * hd:q0 + (rank + 1) * kv * hd],
                                      w[:, q0 + k0 + rank * kv * hd:q0 + k0 + (rank + 1) * kv * hd]], dim=1).contiguous()
            mine["wo"] = whole["wo"][rank * heads * hd:(rank + 1) * heads * hd].contiguous()
            gate, up = whole["wgu"].chunk(2, dim=1)
            mine["wgu"] = torch.cat([gate[:, rank * ffn:(rank + 1) * ffn], up[:, rank * ffn:(rank + 1) * ffn]],
                                    dim=1).contiguous()
            mine["wdown"] = whole["wdown"][rank * ffn:(rank + 1) * ffn].contiguous()
        self.lm_head = full.lm_head[:, rank * vocab:(rank + 1) * vocab].contiguous()

    def _proj(self, x, w):
        y = x @ w
        dist.all_reduce(y)
        return y

    def _logits(self, x):
        mine = x @ self.lm_head
        parts = [torch.empty_like(mine) for _ in range(self.n)]
        dist.all_gather(parts, mine)
        return torch.cat(parts, dim=-1)[..., :self.full_arch.vocab]


def allreduce_table(sizes_bytes: list[int], dtype=torch.bfloat16, device="cpu", repeats: int = 20,
                    warmup: int = 5) -> dict:
    """Median milliseconds of one all-reduce of each size (bytes) on the default group."""
    ms = []
    itemsize = torch.empty((), dtype=dtype).element_size()
    for size in sizes_bytes:
        x = torch.ones(max(1, size // itemsize), dtype=dtype, device=device)
        for _ in range(warmup):
            dist.all_reduce(x)
        samples = []
        for _ in range(repeats):
            dist.barrier()
            if x.is_cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                dist.all_reduce(x)
                end.record()
                end.synchronize()
                samples.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                dist.all_reduce(x)
                samples.append((time.perf_counter() - t0) * 1000)
        ms.append(statistics.median(samples))
    return {"bytes": list(sizes_bytes), "ms": ms}


class GroupTarget:
    """Rank 0's handle on a tensor-parallel target, usable wherever the decoding loops (runner.py)
    take an executor: each call first broadcasts its shape, position and tokens to the other ranks,
    which run the same forward in `follow` (a serving engine's driver broadcasts its step the same
    way), then runs rank 0's shard; `close` releases the followers."""

    def __init__(self, ex):
        self.ex, self.model, self.mode = ex, ex.model, ex.mode

    @property
    def captures(self) -> int:
        return self.ex.captures

    def _header(self, *values) -> None:
        dist.broadcast(torch.tensor(values, dtype=torch.long, device=self.model.device), 0)

    def __call__(self, tokens: torch.Tensor, start: int) -> torch.Tensor:
        self._header(tokens.shape[0], tokens.shape[1], start, 1)
        dist.broadcast(tokens.contiguous(), 0)
        return self.ex(tokens, start)

    def close(self) -> None:
        self._header(0, 0, 0, 0)


def follow(ex) -> int:
    """On a rank other than 0: run the target forwards rank 0's GroupTarget broadcasts, until it
    closes; returns how many ran."""
    dev, ran = ex.model.device, 0
    while True:
        header = torch.empty(4, dtype=torch.long, device=dev)
        dist.broadcast(header, 0)
        batch, query, start, go = header.tolist()
        if not go:
            return ran
        tokens = torch.empty((batch, query), dtype=torch.long, device=dev)
        dist.broadcast(tokens, 0)
        ex(tokens, start)
        ran += 1
