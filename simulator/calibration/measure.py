"""Measuring: latency-profile grids and matrices of real runs, written as specsim reads them.

`measure_profile` times one forward pass per grid point (batch, query tokens, context tokens)
and writes the profile folder (profile.yaml with provenance: measured, and one <model>.csv per
model). On CUDA the passes are replayed from CUDA graphs (graphs.py), as serving engines decode,
and timed with CUDA events around each replay; eager passes (`mode="eager"`, the only mode on a
CPU) are timed with a device synchronisation before and after. Every point is measured in
`passes` passes over the grid, each in its own shuffled order, and the profile records how far
the passes disagree point by point: the noise of the machine, beside the numbers.

`measure_runs` times real autoregressive and speculative generations and writes a measurement
file (JSON lines). Configurations run round-robin: one untimed round first (which also
captures any graph not captured ahead), then `repeats` timed rounds, each over every
configuration in its own shuffled order, so a slow spell of a shared host spreads over
configurations instead of landing on one configuration's repeats.
"""

from __future__ import annotations

import datetime as dt
import gc
import itertools
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from .. import catalog
from ..formats import PROFILE_CSV_COLUMNS as CSV_COLUMNS
from ..outputs import file_in_place
from . import graphs, runner
from .llama import Llama

WARMUP_S = 2.0  # forward passes before the first timed grid point of a model, in seconds
GPU_GRID = {"batches": [1, 2, 4, 8, 16, 32, 64], "queries": list(range(1, 17)) + [32, 64, 128, 256, 512],
            "contexts": [0, 128, 512, 1024, 2048]}
CPU_GRID = {"batches": [1, 2], "queries": list(range(1, 10)) + [16, 64, 128], "contexts": [0, 256, 512, 1024]}


def setup(device: str, threads: int | None) -> tuple[torch.device, torch.dtype]:
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cuda.enable_cudnn_sdp(False)  # cuDNN attention re-plans for every new length
        return dev, torch.bfloat16
    return dev, torch.float32


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({torch.get_num_threads()} threads)"
    except OSError:
        pass
    return f"{platform.processor() or 'CPU'} ({torch.get_num_threads()} threads)"


def memory_gb(dev: torch.device) -> float:
    if dev.type == "cuda":
        return torch.cuda.get_device_properties(dev).total_memory / 1e9
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9


def fits(arch: catalog.Architecture, batch: int, length: int, dev: torch.device, dtype_bytes: int) -> bool:
    need = arch.params() * dtype_bytes + batch * length * 2 * arch.layers * arch.kv_dim * dtype_bytes
    return need < 0.8 * memory_gb(dev) * 1e9


def default_mode(dev: torch.device) -> str:
    return "graph" if dev.type == "cuda" else "eager"


def time_forward(model: Llama, batch: int, query: int, context: int, min_samples: int, min_s: float,
                 max_samples: int = 50) -> list[float]:
    """Seconds of eager forward passes, each between two device synchronisations."""
    tokens = model.input_like(batch, query)  # token ids, or a later pipeline stage's activations
    for _ in range(2):
        model(tokens, context)
    samples: list[float] = []
    while len(samples) < max_samples and (len(samples) < min_samples or sum(samples) < min_s):
        runner._sync(model.device)
        t0 = time.perf_counter()
        model(tokens, context)
        runner._sync(model.device)
        samples.append(time.perf_counter() - t0)
    return samples


def time_replays(ex: graphs.Graphs, batch: int, query: int, context: int, min_samples: int, min_s: float,
                 max_samples: int = 200) -> list[float]:
    """Seconds of graph replays, each between two CUDA events (the device's time of the pass)."""
    ex.replay(batch, query, context)  # untimed: the first replay after another shape
    samples: list[float] = []
    while len(samples) < max_samples and (len(samples) < min_samples or sum(samples) < min_s):
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(max(min_samples, 1))]
        for start, end in events:
            start.record()
            ex.replay(batch, query, context)
            end.record()
        torch.cuda.synchronize(ex.model.device)
        samples += [start.elapsed_time(end) / 1000 for start, end in events]
    return samples


def _timer(model, mode: str):
    """(time(batch, query, context, min_samples, min_s) -> seconds, prepare(batch, query, context))."""
    if not isinstance(model, Llama):  # a Hugging Face transformers model: its own forward, eager
        from . import hf

        return (lambda b, q, c, n, s: hf.time_forward(model, b, q, c, n)), (lambda b, q, c: None)
    if mode == "graph" and model.device.type == "cuda":
        ex = graphs.Graphs(model)
        return (lambda b, q, c, n, s: time_replays(ex, b, q, c, n, s)), (lambda b, q, c: ex.prepare(b, q, c + q))
    if mode == "graph":
        raise ValueError("graph mode needs a CUDA device (a CPU runs eager forward passes)")
    return (lambda b, q, c, n, s: time_forward(model, b, q, c, n, s)), (lambda b, q, c: None)


def disagreement(per_pass: list[list[float]]) -> float:
    """(largest - smallest) / overall median of a point's per-pass medians."""
    medians = [float(np.median(p)) for p in per_pass]
    return (max(medians) - min(medians)) / float(np.median(np.concatenate(per_pass)))


def measure_profile(models: list[str], out: Path, device: str = "cpu", threads: int | None = None,
                    grid: dict | None = None, min_samples: int = 5, min_s: float = 0.05,
                    mode: str | None = None, passes: int = 2, max_tokens: int | None = None, engine: str = "specsim",
                    log=print) -> Path:
    """min_samples and min_s are per point over all passes; every pass takes its share. Points of
    more than `max_tokens` tokens (batch x query) are not measured, as an engine's step budget
    never runs them (profiles.py fills them by token count, and says so where they are used)."""
    dev, dtype = setup(device, threads)
    mode = "eager" if engine == "hf" else (mode or default_mode(dev))
    if passes < 1:
        raise ValueError("passes must be >= 1")
    grid = grid or (GPU_GRID if dev.type == "cuda" else CPU_GRID)
    dbytes = 2 if dtype == torch.bfloat16 else 4
    out.mkdir(parents=True, exist_ok=True)
    max_len = graphs.span(max(grid["contexts"]) + max(grid["queries"]), 1 << 30)
    notes, spread = [], {}
    for name in models:
        arch = catalog.named(name)  # a preset, or one GPU's tensor-parallel shard of it (<preset>.tp<N>)
        batches = [b for b in grid["batches"] if fits(arch, b, max_len, dev, dbytes)]
        if batches != grid["batches"]:
            notes.append(f"{name}: batch up to {batches[-1]} (larger batches do not fit in memory)")
        if engine == "hf":
            from . import hf

            model = hf.build(name, dev, dtype, seed=0)
        else:
            model = Llama(arch, max_batch=batches[-1], max_len=max_len, device=dev, dtype=dtype)
        t0 = time.perf_counter()
        rows, spread[name] = _measure_grid(model, mode, batches, grid, passes, min_samples, min_s, max_tokens)
        if spread[name] is None:
            del spread[name]
        write_grid(out / f"{name}.csv", rows)
        log(f"{name}: {len(rows)} grid points in {time.perf_counter() - t0:.0f} s"
            + (f"; passes disagree by {spread[name]['median']:.1%} at the median point, {spread[name]['p90']:.1%} at "
               f"the p90" if name in spread else ""))
        del model
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    meta = _profile_meta(dev, dtype, mode, engine, passes, min_samples, min_s, max_tokens, notes, spread)
    (out / "profile.yaml").write_text(yaml.safe_dump({k: v for k, v in meta.items() if v is not None},
                                                     sort_keys=False, width=100))
    return out



def _measure_grid(model, mode, batches, grid, passes, min_samples, min_s, max_tokens, warmup_calls=None):
    """One model's grid rows (batch, query, context, p50, p10, p90, samples) in ms, and how far its
    passes disagree (None with one pass). `warmup_calls` (with min_s 0): a fixed number of warm-up
    passes instead of WARMUP_S seconds, so that the ranks of a tensor-parallel group, which must
    run the same forwards, do the same work whatever their clocks."""
    timer, prepare = _timer(model, mode)
    warm, calls = time.perf_counter(), 0
    while (calls < warmup_calls if warmup_calls is not None else time.perf_counter() - warm < WARMUP_S):
        timer(1, 1, 0, 1, 0.0)  # settle clocks and caches first
        calls += 1
    points = [(b, q, c) for b, q, c in itertools.product(batches, grid["queries"], grid["contexts"])
              if max_tokens is None or b * q <= max_tokens or q == min(grid["queries"])]
    rng = np.random.default_rng(0)
    for i in rng.permutation(len(points)):  # graphs captured ahead, as an engine does at start
        prepare(*points[i])
    # each pass in its own shuffled order: a slow spell of the machine spreads over the grid as
    # noise instead of biasing one corner of it, and shows as disagreement between passes
    samples: list[list[list[float]]] = [[] for _ in points]
    n_pass, s_pass = max(1, -(-min_samples // passes)), min_s / passes
    for _ in range(passes):
        for i in rng.permutation(len(points)):
            samples[i].append(timer(*points[i], n_pass, s_pass))
    return grid_rows(points, samples)


def grid_rows(points: list[tuple[int, int, int]], samples: list[list[list[float]]]) -> tuple[list[tuple], dict | None]:
    """A grid's rows (batch, query, context, p50, p10, p90, samples) in ms from each point's samples
    in seconds, pass by pass (every point the same number of passes), and how far its passes
    disagree over the points (None with one pass)."""
    rows = []
    for (b, q, c), per_pass in zip(points, samples):
        ms = np.concatenate(per_pass) * 1000
        rows.append((b, q, c, *np.percentile(ms, [50, 10, 90]).round(4), len(ms)))
    if len(samples[0]) == 1:
        return rows, None
    d = np.array([disagreement(p) for p in samples])
    return rows, {"median": round(float(np.median(d)), 4), "p90": round(float(np.percentile(d, 90)), 4),
                  "max": round(float(d.max()), 4)}


def write_grid(path: Path, rows: list[tuple]) -> None:
    """One model's profile CSV, written in place."""
    with file_in_place(path) as tmp:
        tmp.write_text(",".join(CSV_COLUMNS) + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")


def _profile_meta(dev, dtype, mode, engine, passes, min_samples, min_s, max_tokens, notes, spread) -> dict:
    """profile.yaml of a measured grid: what ran, how it was timed, where and when."""
    timing = ("replayed from a CUDA graph captured once per (batch, query, attention span of the context rounded "
              f"up to {graphs.BUCKET} slots), timed by CUDA events around each replay" if mode == "graph" else
              "run eagerly, timed with a device synchronisation before and after, after 2 warm-up passes")
    meta = {
        "device": device_name(dev),
        "provenance": "measured",
        "execution": mode,
        "method": ("one forward pass per grid point of Hugging Face transformers' LlamaForCausalLM (random "
                   "weights, a DynamicCache filled to the context and cropped back between samples)"
                   if engine == "hf" else "one forward pass per grid point of specsim's PyTorch Llama (random "
                   "weights, preallocated KV cache)") + f", {timing} ({WARMUP_S:g} s of passes before a model's first point); {passes} "
                  f"passes over the grid, each in its own shuffled order; median of at least {min_samples} samples "
                  f"and {min_s} s per point"
                  + (f"; points of more than {max_tokens} tokens (batch x query) not measured" if max_tokens else "")
                  + ("; " + "; ".join(notes) if notes else ""),
        "date": dt.date.today().isoformat(),
        "software": f"PyTorch {torch.__version__}" + (f", CUDA {torch.version.cuda}" if dev.type == "cuda" else "")
                    + f", Python {platform.python_version()}",
        "dtype": str(dtype).replace("torch.", ""),
        "memory_gb": round(memory_gb(dev), 1),
        "threads": torch.get_num_threads() if dev.type == "cpu" else None,
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "pass_disagreement": spread or None,
    }
    return meta

PROBE_SAMPLES = 8  # forwards per host probe


def host_probe(target, draft, context: int):
    """(now, record): now() times the target's and the draft's eager decode forward (batch 1, query 1,
    `context` cached tokens; the median of PROBE_SAMPLES, in ms, as a profile times that point, for
    this package's models and Hugging Face's alike: _timer); record(before, after) is a run's
    `host_probe` from two of them, taken right before and right after it. It lets a comparison tell
    a slow host from a wrong model (compare.at_profile_speed)."""
    timers = {"target_ms": _timer(target, "eager")[0]} | ({"draft_ms": _timer(draft, "eager")[0]} if draft else {})

    def now() -> dict:
        return {k: round(float(np.median(t(1, 1, context, PROBE_SAMPLES, 0.0))) * 1e3, 4) for k, t in timers.items()}

    def record(before: dict, after: dict) -> dict:
        return {"batch": 1, "query_tokens": 1, "context_tokens": context, **{k: [before[k], after[k]] for k in before}}

    return now, record


def measure_runs(configs: list[dict], out: Path, device: str = "cpu", threads: int | None = None,
                 draft_device: str | None = None, repeats: int = 3, seed: int = 0, mode: str | None = None,
                 log=print, probes: bool = False) -> Path:
    """Real runs, one JSON line each. A config: target, draft (or None), gamma, mode, alpha,
    prompt_tokens, output_tokens, optionally batch (sequences decoded together, oracle mode; the
    run's tokens_per_s then counts every sequence's tokens), and the profile names the simulation
    should use. `mode` is how forward passes execute (graph on CUDA by default; a draft on a CPU
    runs eagerly). `probes`: each run bracketed by host probes (`host_probe`; eager runs only: a
    replayed graph does not wait on the host)."""
    dev, dtype = setup(device, threads)
    ddev = torch.device(draft_device) if draft_device else dev
    ddtype = torch.float32 if ddev.type == "cpu" else dtype
    mode = mode or default_mode(dev)
    if probes and mode != "eager":
        raise ValueError("host probes time eager forwards: measure eager runs (--mode eager) to probe them")
    max_len = graphs.span(max(c["prompt_tokens"] + c["output_tokens"] + c.get("gamma", 0) for c in configs) + 2,
                          1 << 30)
    max_batch = max(c.get("batch", 1) for c in configs)
    executors: dict[tuple, object] = {}

    def executor(name: str, where: torch.device, kind: torch.dtype, seed: int):
        key = (name, str(where))
        if key not in executors:
            model = Llama(catalog.PRESETS[name], max_batch=max_batch, max_len=max_len, device=where, dtype=kind,
                          seed=seed)
            beside = where.type == "cpu" and dev.type == "cuda"  # a CPU draft beside a GPU target: eager
            executors[key] = graphs.executor(model, "eager" if beside else mode)
        return executors[key]

    def ends(cfg):  # every (executor, batch, query, end) a configuration's forwards can have
        P, n, g, B = cfg["prompt_tokens"], cfg["output_tokens"], cfg.get("gamma", 0), cfg.get("batch", 1)
        tgt = executor(cfg["target"], dev, dtype, 1)
        out = [(tgt, B, P, P)]
        reach = range(P + 1, P + n + g + 2, graphs.BUCKET)
        out += [(tgt, B, q, e) for e in [*reach, P + n + g + 1] for q in range(1, g + 2)]
        if cfg.get("draft") and g:
            d = executor(cfg["draft"], ddev, ddtype, 2)
            out += [(d, B, P, P)] + [(d, B, q, e) for e in [*reach, P + n + g + 1] for q in (1, 2)]
        return out

    prompts = []
    for i, cfg in enumerate(configs):
        prompts.append(torch.randint(0, 32000, (cfg.get("batch", 1), cfg["prompt_tokens"]),
                                     generator=torch.Generator().manual_seed(seed + i)))
        for ex, b, q, e in ends(cfg):  # graphs captured ahead, as an engine does at start
            if isinstance(ex, graphs.Graphs) and ex.cuda:
                ex.prepare(b, q, e)
    round_robin(len(configs), repeats, seed, out, log,
                lambda i, rnd: _one_run(configs[i], i, rnd, prompts[i], executor, dev, ddev, dtype, ddtype, seed, probes))
    return out


def round_robin(n: int, repeats: int, seed: int, out: Path, log, run_one) -> None:
    """`run_one(i, round)` for every configuration i: round -1 untimed (warm-up, graphs), then
    `repeats` timed rounds, each over every configuration in its own shuffled order; each timed
    round's records (dicts) are appended to `out` as JSON lines as they come."""
    order = np.random.default_rng(seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        for rnd in range(-1, repeats):
            for i in order.permutation(n):
                rec = run_one(int(i), rnd)
                if rnd >= 0 and rec is not None:  # None: an item that writes no record (a profile pass)
                    f.write(json.dumps(rec) + "\n")
                    f.flush()
            if rnd >= 0:
                log(f"round {rnd + 1}/{repeats}: {n} configurations")


def _one_run(cfg: dict, i: int, rnd: int, prompt, executor, dev, ddev, dtype, ddtype, seed: int,
             probes: bool = False) -> dict:
    target = executor(cfg["target"], dev, dtype, 1)
    draft = executor(cfg["draft"], ddev, ddtype, 2) if cfg.get("draft") else None
    batch = cfg.get("batch", 1)
    rng = np.random.default_rng(seed * 1000 + i * 10)  # every repeat draws alike: its spread is the machine's
    marks: list[float] = []
    if probes:
        now, record = host_probe(target.model, draft.model if draft else None, cfg["prompt_tokens"])
        before = now()
    captures = target.captures + (draft.captures if draft else 0)
    started = time.time()
    gc.collect()
    gc.disable()  # no collector pauses inside a timed generation
    try:
        if draft is None:
            toks, secs = runner.autoregressive(target, prompt.to(dev), cfg["output_tokens"], marks)
            accepted = []
        else:
            toks, accepted, secs = runner.speculative(target, draft, prompt, cfg["output_tokens"], cfg["gamma"],
                                                      cfg.get("mode", "greedy"), cfg.get("alpha") or 0.0, rng, marks)
    finally:
        gc.enable()
    host = record(before, now()) if probes else None
    run = runner.Run(target=cfg["target"], draft=cfg.get("draft"), gamma=cfg.get("gamma", 0),
                     mode=cfg.get("mode", "autoregressive"), alpha=cfg.get("alpha"),
                     prompt_tokens=cfg["prompt_tokens"], output_tokens=len(toks), seconds=secs,
                     tokens_per_s=batch * len(toks) / secs, batch=batch, accepted=accepted,
                     device=device_name(dev), repeat=max(rnd, 0), execution=target.mode)
    rec = run.to_dict() | {k: cfg[k] for k in ("target_profile", "draft_profile", "tp", "interconnect", "pp", "stage_link")
                           if k in cfg}
    rec["round"] = rnd
    rec["started_unix_s"] = round(started, 3)
    rec["captures_in_run"] = target.captures + (draft.captures if draft else 0) - captures
    rec["step_end_s"] = [round(m, 6) for m in marks]
    if host:
        rec["host_probe"] = host
    return rec
