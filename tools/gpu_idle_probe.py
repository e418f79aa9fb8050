"""Does a forward pass after the GPU has idled take longer than one right after another?

  python tools/gpu_idle_probe.py OUT.json [--quick]

Replays one decode forward (query 1 and 4, context 64) of llama2-7b and llama-68m from a CUDA
graph after an idle gap of 0, 1, 3, 10, 30 or 60 ms (the host sleeps, nothing runs on the GPU),
gaps in a shuffled order, 40 samples each, and writes the median, p10 and p90 of each forward's
wall time (host clock from replay to synchronisation) per model, query and gap. A speculative
step over a slow link leaves the target idle for two link latencies: if its forwards are slower
after such a gap, the profile (measured back to back) undercharges them.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from simulator import catalog
from simulator.calibration import graphs
from simulator.calibration.llama import Llama
from simulator.calibration.measure import setup

GAPS_MS = [0, 1, 3, 10, 30, 60]


def main() -> None:
    out, quick = Path(sys.argv[1]), "--quick" in sys.argv
    dev, dtype = setup("cuda" if torch.cuda.is_available() else "cpu", None)
    samples = 5 if quick else 40
    rng = np.random.default_rng(0)
    result = {}
    for name in ("llama-68m", "llama2-7b"):
        ex = graphs.Graphs(Llama(catalog.PRESETS[name], max_batch=1, max_len=128, device=dev, dtype=dtype, seed=1))
        for q in (1, 4):
            tokens = torch.randint(0, 32000, (1, q), device=dev)
            for _ in range(20):  # capture and warm
                ex(tokens, 64)
            times: dict[int, list[float]] = {g: [] for g in GAPS_MS}
            for _ in range(samples):
                for gap in rng.permutation(GAPS_MS):
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                    time.sleep(gap / 1000)
                    t = time.perf_counter()
                    ex(tokens, 64)
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                    times[int(gap)].append(1000 * (time.perf_counter() - t))
            result[f"{name} query {q}"] = {
                f"{g} ms": {"median": float(np.median(v)), "p10": float(np.percentile(v, 10)),
                            "p90": float(np.percentile(v, 90))} for g, v in times.items()}
            line = ", ".join(f"{g} ms: {np.median(v):.3f}" for g, v in times.items())
            print(f"{name} query {q}, forward ms after a gap of {line}", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
