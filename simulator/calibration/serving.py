"""A real continuous-batching server, timed: requests arrive and leave while it runs.

It schedules with the very decisions the `batched` strategy simulates (simulator/batching.py:
first come first served admission while a slot is free, prefill `separate`: a step with prompts
waiting prefills only them, whole prompts up to `step_tokens`, at least one; a finished prefill
commits the first token), so a difference between the two is a difference of time, not of
schedule. Each step runs on real models:

- prefill: the step's prompts of one length go through one forward [k, P] into their cache rows
  (prompts of several lengths: one forward per length);
- decode: every running request is a row (rows 0..B-1 of a static KV cache, each at its own
  position): g = the largest draft length of the step; the draft's first forward feeds each
  row's last two tokens (the draft's catch-up after a full accept, else a recomputed token, so
  all rows share one shape), then g - 1 forwards of one token; the target verifies the newest
  token and the g drafts of every row in one forward; a host synchronisation reads its choices;
  each row accepts its drafts (up to its own g_i) iid with probability alpha (seeded), or, with
  alpha None, while they agree with the target's choices (greedy: the output is then the
  target's own greedy output), and commits min(k + 1, tokens left).

Forwards are replayed from CUDA graphs (graphs.py) at the batch padded to the next power of two
(rows past the running ones are free); on a CPU the same static-shape forwards run directly.
When a request leaves, the last row's caches move into its row, so the running rows stay
0..B-1. Time is real: a request is admitted only once its arrival time has passed; an empty
server waits for the next arrival.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
import torch

from ..batching import Batcher
from ..records import RequestRecord
from ..speculation import Fixed
from .graphs import Graphs


def request(id: int, arrival_s: float, prompt_tokens: int, output_tokens: int) -> RequestRecord:
    """One request of the stream, as Batcher tracks it (the simulator's own record); times in seconds
    since the server's start."""
    return RequestRecord(id, prompt_tokens, output_tokens, arrival_s)


def _pad(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


class Server:
    """Serves a list of requests on a target (and optionally a draft) executor; `run()` returns the
    requests with their times and one (end_s, batch, prefill_tokens, drafted, accepted, committed)
    tuple per step, the fields of records.BatchRecord after its start."""

    def __init__(self, target: Graphs, draft: Graphs | None, max_batch: int, gamma: int, alpha: float,
                 step_tokens: int, seed: int = 0):
        if _pad(max_batch) > target.model.cache.shape[2]:
            raise ValueError("the cache needs a row for every padded batch row")
        self.t, self.d = target, draft
        self.gamma = gamma if draft is not None else 0
        self.alpha, self.rng = alpha, np.random.default_rng(seed)
        self.batcher = Batcher(max_batch, 1 << 62, self.gamma, step_tokens=step_tokens)  # reserve; separate prefill
        self.policy = Fixed(self.gamma)
        self.dev = target.model.device
        self.row_of: dict[int, int] = {}  # request id -> cache row
        self.ids: list[int] = []  # cache row -> request id
        self.last2 = torch.zeros((target.model.cache.shape[2], 2), dtype=torch.long, device=self.dev)
        self.tokens: dict[int, list[int]] = {}  # request id -> tokens committed

    def run(self, requests: list[RequestRecord], prompts: dict[int, torch.Tensor]):
        pending = deque(sorted(requests, key=lambda r: r.arrival_s))
        steps, b = [], self.batcher
        t0 = time.perf_counter()
        while pending or b.waiting or len(b.free) < len(b.rec):
            now = time.perf_counter() - t0
            while pending and pending[0].arrival_s <= now:
                b.waiting.append(pending.popleft())
            step = b.schedule(self.policy)
            if step is None:  # nothing admitted: wait for the next arrival
                if not pending:
                    break
                time.sleep(max(0.0, pending[0].arrival_s - (time.perf_counter() - t0)))
                continue
            accepted = self._prefill(step, prompts) if step.pieces else self._decode(step)
            firsts, finished, made = b.commit(step, accepted)
            end = time.perf_counter() - t0
            for r in firsts:
                r.first_token_s = end
            for r in finished:
                r.finish_s = end
            steps.append((end, int(step.decode.size), step.prompt_tokens, step.drafted,
                          int(accepted.sum()) if step.drafted else 0, made))
            for r in finished:
                self._leave(r)
        return requests, steps

    # ------------------------------------------------------------ steps

    def _prefill(self, step, prompts) -> np.ndarray:
        by_len: dict[int, list[int]] = {}
        for slot, p, _ in step.pieces:
            rid = self.batcher.rec[slot].id
            self.row_of[rid] = len(self.ids)
            self.ids.append(rid)
            by_len.setdefault(p, []).append(rid)
        for ids in by_len.values():
            tokens = torch.stack([prompts[rid] for rid in ids]).to(self.dev)
            rows = torch.tensor([self.row_of[rid] for rid in ids], device=self.dev)
            if self.d is not None:
                self.d.prefill(tokens, rows)
            first = self.t.prefill(tokens, rows)[:, -1]
            self.last2[rows] = torch.stack([tokens[:, -1], first], 1)
            for rid, tok in zip(ids, first.tolist()):
                self.tokens[rid] = [tok]
        return np.zeros(0, np.int64)

    def _decode(self, step) -> np.ndarray:
        b = self.batcher
        slots = [int(s) for s in step.decode]
        rows = [self.row_of[b.rec[s].id] for s in slots]  # the cache row of each decoding slot
        B = len(slots)
        assert sorted(rows) == list(range(B)), "the running rows are 0..B-1"
        ctx, gam, left = np.empty(B, np.int64), np.zeros(B, np.int64), np.empty(B, np.int64)
        ctx[rows], left[rows] = b.decoding_state(step.decode)
        if step.drafted:
            gam[rows] = step.gammas
        g, P, top = int(gam.max(initial=0)), _pad(B), int(ctx.max())
        starts = torch.ones(P, dtype=torch.long, device=self.dev)  # padding rows: any valid position
        starts[:B] = torch.from_numpy(ctx).to(self.dev)
        drafts = []
        if g:  # the last two tokens of every row, then one token at a time
            d = self.d(self.last2[:P], starts - 1, top - 1)[:, -1:]
            drafts.append(d)
            for j in range(1, g):
                d = self.d(d, starts + j, top + j)
                drafts.append(d)
        block = torch.cat([self.last2[:P, 1:2], *drafts], 1)
        choice = self.t(block, starts, top)[:B].tolist()  # the host synchronisation
        proposed = block[:B].tolist()
        accepted = np.zeros(B, np.int64)
        for r in range(B):  # row by row, each its own draws
            k = 0
            while k < gam[r] and (proposed[r][k + 1] == choice[r][k] if self.alpha is None
                                  else self.rng.random() < self.alpha):
                k += 1
            accepted[r] = k
            self.tokens[self.ids[r]] += (proposed[r][1:k + 1] + [choice[r][k]])[:left[r]]
        # each row's last two tokens now: its last accepted draft (or the newest), and the target's choice
        pairs = [[proposed[r][accepted[r]], choice[r][accepted[r]]] for r in range(B)]
        self.last2[:B] = torch.tensor(pairs, device=self.dev)
        return accepted[rows]  # in the batcher's order of slots

    def _leave(self, r: RequestRecord) -> None:
        """Move the last row's caches into the finished request's row."""
        row, last = self.row_of.pop(r.id), len(self.ids) - 1
        moved = self.ids.pop()
        if row != last:
            for ex in (self.t, self.d):
                if ex is not None:
                    ex.model.cache[:, :, row].copy_(ex.model.cache[:, :, last])
            self.last2[row] = self.last2[last]
            self.ids[row] = moved
            self.row_of[moved] = row


def stream(cfg: dict, seed: int) -> tuple[list[RequestRecord], dict[int, torch.Tensor]]:
    """A configuration's requests: Poisson arrivals at rate_per_s, fixed prompts, output lengths
    uniform in [output_low, output_high], random prompt tokens; all seeded."""
    rng = np.random.default_rng(seed)
    n = cfg["requests"]
    arrivals = np.cumsum(rng.exponential(1 / cfg["rate_per_s"], n))
    outs = rng.integers(cfg["output_low"], cfg["output_high"] + 1, n)
    gen = torch.Generator().manual_seed(seed)
    reqs = [request(i, float(arrivals[i] - arrivals[0]), cfg["prompt_tokens"], int(outs[i])) for i in range(n)]
    return reqs, {r.id: torch.randint(0, 32000, (r.prompt_tokens,), generator=gen) for r in reqs}


def measure(configs: list[dict], out, device: str = "cuda", repeats: int = 3, seed: int = 0, log=print) -> None:
    """Serving streams, one JSON line each (`kind: serving`; streams.py reads them), round-robin as
    measure.measure_runs: an untimed round, then `repeats` rounds in shuffled orders; a stream's
    repeats serve the same requests with the same draws. A config: target, draft (or None), gamma,
    alpha, max_batch, step_tokens, requests, rate_per_s, prompt_tokens, output_low, output_high and
    target_profile."""
    from pathlib import Path

    from .. import catalog
    from .llama import Llama
    from .measure import device_name, round_robin, setup

    dev, dtype = setup(device, None)
    max_len = graphs_span(max(c["prompt_tokens"] + c["output_high"] + c.get("gamma", 0) for c in configs) + 2)
    rows = _pad(max(c["max_batch"] for c in configs))
    executors: dict[str, Graphs] = {}

    def executor(name: str, model_seed: int) -> Graphs:
        if name not in executors:
            executors[name] = Graphs(Llama(catalog.PRESETS[name], max_batch=rows, max_len=max_len, device=dev,
                                           dtype=dtype, seed=model_seed))
        return executors[name]

    def one(i: int, rnd: int) -> dict:
        cfg = configs[i]
        t, d = executor(cfg["target"], 1), (executor(cfg["draft"], 2) if cfg.get("draft") else None)
        before = t.captures + (d.captures if d else 0)
        reqs, prompts = stream(cfg, seed * 1000 + i)
        server = Server(t, d, cfg["max_batch"], cfg.get("gamma", 0), cfg["alpha"], cfg["step_tokens"],
                        seed=seed * 1000 + i)
        done, steps = server.run(reqs, prompts)
        rec = {k: cfg.get(k) for k in ("target", "draft", "gamma", "alpha", "max_batch", "step_tokens",
                                        "rate_per_s", "target_profile")}
        return rec | {"kind": "serving", "engine": "specsim", "execution": "graph" if t.cuda else "static",
                      "prefill": "separate", "device": device_name(dev), "round": rnd,
                      "captures_in_run": t.captures + (d.captures if d else 0) - before,
                      "requests": [[round(r.arrival_s, 6), r.prompt_tokens, r.output_tokens,
                                    round(r.first_token_s, 6), round(r.finish_s, 6)] for r in done],
                      "steps": [[round(s[0], 6), *s[1:]] for s in steps]}

    round_robin(len(configs), repeats, seed, Path(out), log, one)


def graphs_span(end: int) -> int:
    from .graphs import span

    return span(end, 1 << 30)
