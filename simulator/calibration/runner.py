"""Real decoding loops, timed: autoregressive and speculative, as engines run them.

Speculative step: g draft forwards (the first also feeds any committed token the draft has not
seen), one target forward over the newest token and the g drafts, a host synchronisation to
read the target's choices, acceptance, rollback of both KV caches (moving their positions back)
and the target's own next token. Acceptance is `greedy` (real token agreement: lossless, the
output equals the target's greedy output) or `oracle` (a seeded Bernoulli(alpha) per drafted
token decides while all the compute is real).

A prompt of B rows decodes B sequences together (a static batch: every forward at batch B, the
rows in step). With B > 1 only `oracle` acceptance is allowed: one draw per step decides for every
row, so the rows stay at one position and the timing is that of B sequences accepting alike; the
tokens returned are row 0's.

`target` and `draft` are executors (graphs.py: eager, or replayed from CUDA graphs) or models,
which run eagerly.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .graphs import Eager
from .llama import Llama


@dataclass
class Run:
    """One measured generation; the fields are the measurement-file format (docs/calibration.md)."""

    target: str
    draft: str | None
    gamma: int
    mode: str  # autoregressive | greedy | oracle
    alpha: float | None
    prompt_tokens: int
    output_tokens: int
    seconds: float
    tokens_per_s: float
    batch: int = 1
    accepted: list[int] = field(default_factory=list)  # per step
    device: str = ""
    repeat: int = 0
    execution: str = "eager"  # graph (CUDA-graph replay) or eager

    def to_dict(self) -> dict:
        return asdict(self)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _executor(m):
    return Eager(m) if isinstance(m, Llama) else m


def autoregressive(target, prompt: torch.Tensor, n: int, marks: list | None = None) -> tuple[list[int], float]:
    """Greedy generation of n tokens; returns the tokens and the wall time in seconds. `marks`, if
    given, receives the time of each token since the start (after its host synchronisation)."""
    target = _executor(target)
    _sync(target.model.device)
    t0 = time.perf_counter()
    nxt = target(prompt, 0)[:, -1]
    out, pos = [int(nxt[0])], prompt.shape[1]
    while len(out) < n:
        nxt = target(nxt.view(-1, 1), pos)[:, -1]
        out.append(int(nxt[0]))  # int(): the host synchronisation of every step
        if marks is not None:
            marks.append(time.perf_counter() - t0)
        pos += 1
    _sync(target.model.device)
    return out, time.perf_counter() - t0


def speculative(target, draft, prompt: torch.Tensor, n: int, gamma: int, mode: str = "greedy",
                alpha: float = 0.8, rng: np.random.Generator | None = None,
                marks: list | None = None) -> tuple[list[int], list[int], float]:
    """Speculative generation of n tokens; returns the tokens, accepted drafts per step, wall seconds.
    `marks`, if given, receives the time of each step since the start (after its host synchronisation)."""
    target, draft = _executor(target), _executor(draft)
    dev, ddev = target.model.device, draft.model.device  # the draft may sit on another device (CPU beside a GPU)
    rng = rng or np.random.default_rng(0)
    rows = prompt.shape[0]
    if rows > 1 and mode != "oracle":
        raise ValueError("a batch of several sequences needs oracle acceptance (one decision for all rows)")
    _sync(dev)
    t0 = time.perf_counter()
    P = prompt.shape[1]
    if gamma:
        draft(prompt.to(ddev), 0)
    nxt = int(target(prompt.to(dev), 0)[0, -1])
    seq = prompt[0].tolist() + [nxt]
    out, pos, dlen, accepted = [nxt], P, P, []  # pos: tokens in the target cache; dlen: in the draft's
    while len(out) < n:
        g = max(0, min(gamma, n - len(out) - 1))
        drafts = []
        if g:
            feed = torch.tensor([seq[dlen:pos + 1]] * rows, device=ddev)  # catch up: one token, or two after a full accept
            start = dlen
            for _ in range(g):
                d = draft(feed, start)[:, -1]
                drafts.append(d)
                start += feed.shape[1]
                feed = d.view(rows, 1)
            dlen = start
            block = torch.cat([torch.full((rows, 1), nxt, device=ddev), torch.stack(drafts, 1)], 1).to(dev)
        else:
            block = torch.full((rows, 1), nxt, device=dev)
        choice = target(block, pos)[0].tolist()  # host synchronisation (row 0 decides)
        if marks is not None:
            marks.append(time.perf_counter() - t0)
        proposed = block[0, 1:].tolist()
        k = 0
        if mode == "greedy":
            while k < g and proposed[k] == choice[k]:
                k += 1
        else:
            while k < g and rng.random() < alpha:
                k += 1
        new = (proposed[:k] + [choice[k]])[: n - len(out)]
        out += new
        seq += new
        accepted.append(k)
        pos += len(new)  # rollback: positions past the accepted prefix will be overwritten
        dlen = min(dlen, pos)
        nxt = new[-1]
    _sync(dev)
    return out, accepted, time.perf_counter() - t0
