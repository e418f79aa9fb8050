"""Speculative decoding across two processes over TCP on the loopback, through a shaping proxy
(simulator/calibration/tcp.py): on this machine's CPU, one thread each side, or on a GPU.

  python tools/tcp_campaign.py OUT NAME [--quick] [--probes] [--device cuda] [--cores C,S,P]

1. measures the profile OUT/NAME (CPU: llama-68m and llama-160m, one thread, 3 shuffled passes;
   cuda: llama-68m and llama2-7b replayed from CUDA graphs, bf16);
2. writes OUT/runs-tcp.jsonl: llama-68m drafting for the other model (CPU: gamma 1 and 3, prompt
   32, output 48; cuda: gamma 1, 3 and 5, output 64; oracle alpha 0.7) in one process and over
   three links (100 Mbit/s and 1 ms, 20 Mbit/s and 10 ms, 5 Mbit/s and 30 ms), round-robin (3
   rounds; cuda 5);
3. measures the profile again (OUT/NAME-after) and merges the two into OUT/NAME, the per-point
   median over both (tools/merge_grids.py): a profile that brackets the runs in time.
--probes: a host probe around every run (CPU only; compare and fit them with --host-speed).
--cores C,S,P: pin the drafting process, the target's and the proxy to one CPU each.
Then: SPECSIM_PROFILE_PATH=OUT specsim calibrate compare OUT/runs-tcp.jsonl (and calibrate fit).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from merge_grids import main as merge

from simulator.calibration import tcp
from simulator.calibration.measure import measure_profile

LINKS = [None, {"bandwidth_mbps": 100, "latency_ms": 1}, {"bandwidth_mbps": 20, "latency_ms": 10},
         {"bandwidth_mbps": 5, "latency_ms": 30}]
GRID = {"batches": [1], "queries": [1, 2, 3, 4, 5, 32], "contexts": [0, 32, 64, 96]}
GPU_GRID = {"batches": [1], "queries": [1, 2, 3, 4, 5, 6, 32], "contexts": [0, 16, 32, 48, 64, 80, 96, 112]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("name")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--probes", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cores", default=None, help="C,S,P: CPUs of the drafting process, the target's, the proxy's")
    a = ap.parse_args()
    gpu = a.device != "cpu"
    target = "llama2-7b" if gpu else "llama-160m"
    gammas, output = ((1, 3, 5), 64) if gpu else ((1, 3), 48)
    configs = [{"target": target, "draft": "llama-68m", "gamma": g, "mode": "oracle", "alpha": 0.7,
                "prompt_tokens": 32, "output_tokens": 12 if a.quick else output} for g in gammas]
    cores = tuple(int(c) for c in a.cores.split(",")) if a.cores else None

    def profile(folder: Path) -> None:
        if gpu:
            measure_profile(["llama-68m", target], folder, device=a.device, grid=GPU_GRID,
                            min_samples=2 if a.quick else 10, min_s=0.01 if a.quick else 0.05, passes=1 if a.quick else 3)
        else:
            measure_profile(["llama-68m", target], folder, device="cpu", threads=1, grid=GRID,
                            min_samples=2 if a.quick else 6, min_s=0.01 if a.quick else 0.1, passes=1 if a.quick else 3)

    profile(a.out / a.name)
    tcp.measure(configs, LINKS[:2] if a.quick else LINKS, a.out / "runs-tcp.jsonl", a.name,
                repeats=1 if a.quick else (5 if gpu else 3), probes=a.probes, device=a.device, cores=cores)
    profile(a.out / f"{a.name}-after")
    sys.argv = ["merge_grids.py", str(a.out / a.name), str(a.out / f"{a.name}-after")]
    merge()


if __name__ == "__main__":
    main()
