"""The measurement campaign behind the shipped measured profiles and docs/calibration.md.

Runs on the machine being measured and writes everything under OUT:
  python tools/device_campaign.py grid   OUT   # H100 profile grid (h100-sxm-torch-bf16)
  python tools/device_campaign.py runs   OUT   # real runs on the GPU (measurement file)
  python tools/device_campaign.py runs2  OUT   # the same matrix again, other seeds, step times kept
  python tools/device_campaign.py grid1  OUT   # batch 1 of the H100 grid again, 15 samples a point
  python tools/device_campaign.py edge   OUT   # host CPU at 2 and 8 threads: profiles and split runs
  python tools/device_campaign.py cpu    OUT   # this project's 2-core machine: profile and runs
  python tools/device_campaign.py batch  OUT   # static batches of 1-32 sequences on the GPU (measurement file)
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

from simulator.calibration.measure import measure_profile, measure_runs

GPU_GRID = {"batches": [1, 2, 4, 8, 16, 32, 64], "queries": list(range(1, 17)) + [64, 256, 512],
            "contexts": [0, 256, 1024, 2048]}
EDGE_GRID = {"batches": [1], "queries": list(range(1, 10)) + [16, 128], "contexts": [0, 256, 512, 1024]}
GPU = "h100-sxm-torch-bf16"


def gpu_runs() -> list[dict]:
    out = []
    for target in ("llama2-7b", "llama2-13b"):
        base = {"target": target, "prompt_tokens": 128, "output_tokens": 128, "target_profile": GPU, "draft_profile": GPU}
        out.append(base | {"mode": "autoregressive", "gamma": 0})
        for draft, gamma, (mode, alpha) in itertools.product(
                ("llama-68m", "llama-160m"), (2, 4, 8), (("oracle", 0.6), ("oracle", 0.9), ("greedy", None))):
            out.append(base | {"draft": draft, "gamma": gamma, "mode": mode, "alpha": alpha})
    small = {"target": "tinyllama-1.1b", "prompt_tokens": 256, "output_tokens": 128, "target_profile": GPU,
             "draft_profile": GPU}
    out.append(small | {"mode": "autoregressive", "gamma": 0})
    out += [small | {"draft": "llama-68m", "gamma": g, "mode": "oracle", "alpha": 0.8} for g in (1, 3, 5)]
    return out


def batch_runs() -> list[dict]:
    """llama2-7b (llama-68m drafting) decoding 1-32 sequences together: autoregressive, and gamma 4 with
    every draft accepted (alpha 1) or none (alpha 0), so every row of the batch steps alike."""
    base = {"target": "llama2-7b", "prompt_tokens": 128, "output_tokens": 128, "target_profile": GPU,
            "draft_profile": GPU}
    out = []
    for b in (1, 2, 4, 8, 16, 32):
        out.append(base | {"batch": b, "mode": "autoregressive", "gamma": 0})
        out += [base | {"batch": b, "draft": "llama-68m", "gamma": 4, "mode": "oracle", "alpha": a} for a in (1.0, 0.0)]
    return out


def edge_runs(threads: int) -> list[dict]:
    base = {"target": "llama2-7b", "prompt_tokens": 128, "output_tokens": 96, "target_profile": GPU,
            "draft_profile": f"cpu-host{threads}-torch-fp32"}
    return [base | {"draft": d, "gamma": g, "mode": m, "alpha": a}
            for d in ("llama-68m", "llama-160m") for g in (2, 4) for m, a in (("oracle", 0.8), ("greedy", None))]


def main() -> None:
    what, out = sys.argv[1], Path(sys.argv[2])
    t0 = time.perf_counter()
    if what == "grid":
        measure_profile(["llama-68m", "llama-160m", "tinyllama-1.1b", "llama2-7b", "llama2-13b"], out / GPU,
                        device="cuda", grid=GPU_GRID, min_samples=5, min_s=0.03)
    elif what == "runs":
        measure_runs(gpu_runs(), out / "runs-h100.jsonl", device="cuda", repeats=3)
    elif what == "runs2":  # a second, independent set: the held-out check of a fit made on the first
        measure_runs(gpu_runs()[:-4], out / "runs-h100-b.jsonl", device="cuda", repeats=3, seed=1)
    elif what == "grid1":  # batch 1 again with three times the samples: how noisy is the grid itself?
        measure_profile(["llama-68m", "llama-160m", "tinyllama-1.1b", "llama2-7b", "llama2-13b"], out / f"{GPU}-b1",
                        device="cuda",
                        grid=GPU_GRID | {"batches": [1]}, min_samples=15, min_s=0.1)
    elif what == "edge":
        for threads in (2, 8):
            measure_profile(["llama-68m", "llama-160m"], out / f"cpu-host{threads}-torch-fp32", device="cpu",
                            threads=threads, grid=EDGE_GRID, min_samples=3, min_s=0.05)
            measure_runs(edge_runs(threads), out / "runs-edge.jsonl", device="cuda", threads=threads,
                         draft_device="cpu", repeats=2)
    elif what == "batch":
        measure_runs(batch_runs(), out / "runs-h100-batch.jsonl", device="cuda", repeats=3)
    elif what == "cpu":
        name = "cpu-2core-torch-fp32"
        measure_profile(["llama-68m", "llama-160m"], out / name, device="cpu", grid=EDGE_GRID, min_samples=3,
                        min_s=0.05)
        runs = [{"target": "llama-160m", "prompt_tokens": 64, "output_tokens": 48, "target_profile": name,
                 "draft_profile": name} | extra
                for extra in ({"mode": "autoregressive", "gamma": 0},
                              *({"draft": "llama-68m", "gamma": g, "mode": m, "alpha": a}
                                for g in (1, 2, 4) for m, a in (("oracle", 0.5), ("oracle", 0.9), ("greedy", None))))]
        measure_runs(runs, out / "runs-cpu2.jsonl", device="cpu", repeats=3)
    else:
        raise SystemExit(__doc__)
    print(f"{what}: done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
