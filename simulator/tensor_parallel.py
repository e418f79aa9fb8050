"""Tensor parallelism: a model split over the GPUs of one device, Megatron-style.

Each of N GPUs holds 1/N of every layer's attention heads and MLP and of the vocabulary
(catalog.Architecture.shard); they run every forward pass in lock step, so the group is one
server. A forward pass of the group takes one GPU's share of it plus the communication:

    t_tp(b, q, c) = t_shard(b, q, c) + 2 L x allreduce(b q hidden dtype_bytes)
                    + allreduce(b q vocab dtype_bytes) / 2

two all-reduces per decoder block (after attention and after the MLP) and one gather of the
logits (costed as half an all-reduce of the whole logits: a ring all-reduce is a reduce-scatter
and an all-gather). An all-reduce takes, on a ring of N GPUs joined by links of `bandwidth_gb_s`
each way and `latency_us` a hop, 2 (N - 1) (latency + S / (N bandwidth)); or the time a measured
table gives (NCCL's or an engine's own all-reduce, measured on the group).

One GPU's share of a forward pass (`t_shard`) comes from the device's profile (profiles.py): a
measured grid of the shard where the profile has one (`<preset>.tp<N>.csv`, measured on one GPU
by `specsim profile --models <preset>.tp<N>`), else derived from a measured shard of another
degree, else a roofline of the shard's architecture, else the whole model's time / N with a
warning (a lower bound: measured on the H200 in graph mode, a 2-way share of llama2-7b takes
1.06-1.68x half the whole model's time; `python tools/tp_shares.py hardware_profiles/h200-torch-graph-bf16`).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from .catalog import Architecture
from .fields import Strict


class AllReduceTable(Strict):
    """Measured times of one all-reduce over the group's GPUs, by message size."""

    bytes: list[float] = Field(min_length=1, description="Message sizes, in bytes, increasing.")
    ms: list[float] = Field(min_length=1, description="Time of one all-reduce of each size, in ms.")

    @model_validator(mode="after")
    def _table(self):
        if len(self.bytes) != len(self.ms):
            raise ValueError("bytes and ms need one entry each per measured size")
        if any(b <= a for a, b in zip(self.bytes, self.bytes[1:])) or self.bytes[0] <= 0:
            raise ValueError("bytes must be positive and increasing")
        if any(not 0 <= m < float("inf") for m in self.ms):
            raise ValueError("ms must be finite and not negative")
        return self


class Interconnect(Strict):
    """How the GPUs of a device exchange activations under tensor parallelism: a ring of links of
    `bandwidth_gb_s` and `latency_us`, or a measured all-reduce table (which then replaces them)."""

    bandwidth_gb_s: float | None = Field(None, gt=0, allow_inf_nan=False, description="Bandwidth of each GPU's "
                                         "link to the next in the ring, each way, in GB/s (NVLink 4 on an "
                                         "H100/H200 SXM: 450; PCIe 5 x16: about 64).")
    latency_us: float = Field(0.0, ge=0, allow_inf_nan=False, description="Time of one hop of the ring "
                              "(launch, synchronisation and wire), in microseconds.")
    allreduce: AllReduceTable | None = Field(None, description="Measured all-reduce times over the group by "
                                             "message size: linear between sizes, along the last two sizes "
                                             "beyond the largest, the smallest's time below it.")

    @model_validator(mode="after")
    def _one(self):
        if self.bandwidth_gb_s is None and self.allreduce is None:
            raise ValueError("give bandwidth_gb_s (and latency_us) or a measured allreduce table")
        return self


def allreduce_s(net: Interconnect, n: int, nbytes: float) -> float:
    """Seconds of one all-reduce of `nbytes` over n GPUs."""
    if n == 1:
        return 0.0
    if net.allreduce is not None:
        xs, ys = net.allreduce.bytes, net.allreduce.ms
        if nbytes > xs[-1] and len(xs) > 1:
            ms = ys[-1] + (ys[-1] - ys[-2]) * (nbytes - xs[-1]) / (xs[-1] - xs[-2])
        else:
            ms = float(np.interp(nbytes, xs, ys))
        return ms / 1000
    return 2 * (n - 1) * (net.latency_us * 1e-6 + nbytes / (n * net.bandwidth_gb_s * 1e9))


def communication_s(arch: Architecture, n: int, net: Interconnect, tokens: int) -> float:
    """Seconds a forward pass of `tokens` tokens (batch x query) spends communicating over n GPUs:
    2 all-reduces a decoder block of the hidden states and one gather of the logits."""
    if n == 1:
        return 0.0
    hidden = tokens * arch.hidden * arch.dtype_bytes
    logits = tokens * arch.vocab * arch.dtype_bytes
    return 2 * arch.layers * allreduce_s(net, n, hidden) + allreduce_s(net, n, logits) / 2


def group_ms_fn(shard_ms_fn, arch: Architecture, n: int, net: Interconnect):
    """The group's forward time in ms: one GPU's share plus the communication (arch: the whole model)."""
    if n == 1:
        return shard_ms_fn

    def ms(batch: int, query: int, contexts: np.ndarray) -> np.ndarray:
        return shard_ms_fn(batch, query, contexts) + 1000 * communication_s(arch, n, net, batch * query)

    return ms


def from_other_degree(whole, shard_m, m: int, n: int):
    """One GPU's share at degree n from the whole model's times and a measured share at degree m:
    at each point the fraction f of the whole model's time that does not split, from
    t_m = t_1 (1/m + (1 - 1/m) f), carried to t_n = t_1 (1/n + (1 - 1/n) f)."""

    def ms(batch: int, query: int, contexts: np.ndarray) -> np.ndarray:
        t1, tm = whole(batch, query, contexts), shard_m(batch, query, contexts)
        unsplit = np.clip((tm / t1 - 1 / m) / (1 - 1 / m), 0.0, 1.0)
        return t1 * (1 / n + (1 - 1 / n) * unsplit)

    return ms
