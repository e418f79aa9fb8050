"""Measuring: latency-profile grids and matrices of real runs, written as specsim reads them.

`measure_profile` times one forward pass per grid point (batch, query tokens, context tokens)
after warm-up, synchronising the device around each pass, and writes the profile folder
(profile.yaml with provenance: measured, and one <model>.csv per model). `measure_runs` times
real autoregressive and speculative generations and writes a measurement file (JSON lines).
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
from . import runner
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


def time_forward(model: Llama, batch: int, query: int, context: int, min_samples: int, min_s: float,
                 max_samples: int = 50) -> list[float]:
    tokens = torch.randint(0, model.arch.vocab, (batch, query), device=model.device)
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


def measure_profile(models: list[str], out: Path, device: str = "cpu", threads: int | None = None,
                    grid: dict | None = None, min_samples: int = 5, min_s: float = 0.05,
                    log=print) -> Path:
    dev, dtype = setup(device, threads)
    grid = grid or (GPU_GRID if dev.type == "cuda" else CPU_GRID)
    dbytes = 2 if dtype == torch.bfloat16 else 4
    out.mkdir(parents=True, exist_ok=True)
    max_len = max(grid["contexts"]) + max(grid["queries"])
    notes = []
    for name in models:
        arch = catalog.PRESETS[name]
        batches = [b for b in grid["batches"] if fits(arch, b, max_len, dev, dbytes)]
        if batches != grid["batches"]:
            notes.append(f"{name}: batch up to {batches[-1]} (larger batches do not fit in memory)")
        model = Llama(arch, max_batch=batches[-1], max_len=max_len, device=dev, dtype=dtype)
        t0 = time.perf_counter()
        time_forward(model, 1, 1, 0, 1, WARMUP_S, max_samples=10_000)  # settle clocks and caches first
        # points in shuffled order: a slow spell of the machine spreads over the grid as noise
        # instead of biasing one corner of it (the first points measured)
        points = list(itertools.product(batches, grid["queries"], grid["contexts"]))
        order = np.random.default_rng(0).permutation(len(points))
        rows = [None] * len(points)
        for i in order:
            b, q, c = points[i]
            s = np.array(time_forward(model, b, q, c, min_samples, min_s)) * 1000
            rows[i] = (b, q, c, *np.percentile(s, [50, 10, 90]).round(4), len(s))
        tmp = out / f".{name}.csv.tmp"
        tmp.write_text(",".join(CSV_COLUMNS) + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
        tmp.replace(out / f"{name}.csv")
        log(f"{name}: {len(rows)} grid points in {time.perf_counter() - t0:.0f} s")
        del model
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    meta = {
        "device": device_name(dev),
        "provenance": "measured",
        "method": "one forward pass per grid point of specsim's PyTorch Llama (random weights, preallocated "
                  "KV cache), timed with a device synchronisation before and after, after 2 warm-up passes "
                  f"(and {WARMUP_S:g} s of passes before a model's first point), points in shuffled order; "
                  f"median of at least {min_samples} samples and {min_s} s per point"
                  + ("; " + "; ".join(notes) if notes else ""),
        "date": dt.date.today().isoformat(),
        "software": f"PyTorch {torch.__version__}" + (f", CUDA {torch.version.cuda}" if dev.type == "cuda" else "")
                    + f", Python {platform.python_version()}",
        "dtype": str(dtype).replace("torch.", ""),
        "memory_gb": round(memory_gb(dev), 1),
        "threads": torch.get_num_threads() if dev.type == "cpu" else None,
        "command": " ".join(shlex.quote(a) for a in sys.argv),
    }
    (out / "profile.yaml").write_text(yaml.safe_dump({k: v for k, v in meta.items() if v is not None},
                                                     sort_keys=False, width=100))
    return out


def measure_runs(configs: list[dict], out: Path, device: str = "cpu", threads: int | None = None,
                 draft_device: str | None = None, repeats: int = 3, seed: int = 0, log=print) -> Path:
    """Real runs, one JSON line each. A config: target, draft (or None), gamma, mode, alpha,
    prompt_tokens, output_tokens, optionally batch (sequences decoded together, oracle mode; the
    run's tokens_per_s then counts every sequence's tokens), and the profile names the simulation
    should use."""
    dev, dtype = setup(device, threads)
    ddev = torch.device(draft_device) if draft_device else dev
    ddtype = torch.float32 if ddev.type == "cpu" else dtype
    max_len = max(c["prompt_tokens"] + c["output_tokens"] for c in configs) + 20
    max_batch = max(c.get("batch", 1) for c in configs)
    models: dict[tuple, Llama] = {}

    def model(name: str, where: torch.device, kind: torch.dtype, seed: int) -> Llama:
        key = (name, str(where))
        if key not in models:
            models[key] = Llama(catalog.PRESETS[name], max_batch=max_batch, max_len=max_len, device=where, dtype=kind,
                                seed=seed)
        return models[key]

    with out.open("a") as f:
        for i, cfg in enumerate(configs):
            target = model(cfg["target"], dev, dtype, 1)
            draft = model(cfg["draft"], ddev, ddtype, 2) if cfg.get("draft") else None
            gen = torch.Generator().manual_seed(seed + i)
            batch = cfg.get("batch", 1)
            prompt = torch.randint(0, 32000, (batch, cfg["prompt_tokens"]), generator=gen)
            for rep in range(-1, repeats):  # repeat -1 is a warm-up, not recorded
                rng = np.random.default_rng(seed * 1000 + i * 10 + max(rep, 0))
                marks: list[float] = []
                gc.collect()
                gc.disable()  # no collector pauses inside a timed generation
                try:
                    if draft is None:
                        toks, secs = runner.autoregressive(target, prompt.to(dev), cfg["output_tokens"], marks)
                        accepted = []
                    else:
                        toks, accepted, secs = _speculative_across(target, draft, prompt, cfg, rng, marks)
                finally:
                    gc.enable()
                if rep < 0:
                    continue
                run = runner.Run(target=cfg["target"], draft=cfg.get("draft"), gamma=cfg.get("gamma", 0),
                                 mode=cfg.get("mode", "autoregressive"), alpha=cfg.get("alpha"),
                                 prompt_tokens=cfg["prompt_tokens"], output_tokens=len(toks), seconds=secs,
                                 tokens_per_s=batch * len(toks) / secs, batch=batch, accepted=accepted,
                                 device=device_name(dev), repeat=rep)
                rec = run.to_dict() | {k: cfg[k] for k in ("target_profile", "draft_profile") if k in cfg}
                rec["step_end_s"] = [round(m, 6) for m in marks]
                f.write(json.dumps(rec) + "\n")
                f.flush()
            log(f"run {i + 1}/{len(configs)}: {cfg} -> {rec['tokens_per_s']:.1f} tokens/s")
    return out


def _speculative_across(target: Llama, draft: Llama, prompt, cfg, rng, marks):
    return runner.speculative(target, draft, prompt, cfg["output_tokens"], cfg["gamma"],
                              cfg.get("mode", "greedy"), cfg.get("alpha") or 0.0, rng, marks)
