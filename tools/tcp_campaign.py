"""Speculative decoding across two processes over TCP on the loopback, through a shaping proxy
(simulator/calibration/tcp.py), on this machine's CPU, one thread each side.

  python tools/tcp_campaign.py OUT NAME [--quick] [--probes]

1. measures the profile OUT/NAME (llama-68m and llama-160m, one thread, 3 shuffled passes);
2. writes OUT/runs-tcp.jsonl: llama-68m drafting for llama-160m (gamma 1 and 3, oracle alpha
   0.7; prompt 32, output 48) in one process and over three links (100 Mbit/s and 1 ms,
   20 Mbit/s and 10 ms, 5 Mbit/s and 30 ms), 3 rounds, round-robin;
3. measures the profile again (OUT/NAME-after) and merges the two into OUT/NAME, the per-point
   median over both (tools/merge_grids.py): a profile that brackets the runs in time.
--probes: a host probe around every run (compare and fit them with --host-speed).
Then: SPECSIM_PROFILE_PATH=OUT specsim calibrate compare OUT/runs-tcp.jsonl (and calibrate fit).
"""

from __future__ import annotations

import sys
from pathlib import Path

from merge_grids import main as merge

from simulator.calibration import tcp
from simulator.calibration.measure import measure_profile

LINKS = [None, {"bandwidth_mbps": 100, "latency_ms": 1}, {"bandwidth_mbps": 20, "latency_ms": 10},
         {"bandwidth_mbps": 5, "latency_ms": 30}]
GRID = {"batches": [1], "queries": [1, 2, 3, 4, 5, 32], "contexts": [0, 32, 64, 96]}


def main() -> None:
    out, name = Path(sys.argv[1]), sys.argv[2]
    quick = "--quick" in sys.argv
    configs = [{"target": "llama-160m", "draft": "llama-68m", "gamma": g, "mode": "oracle", "alpha": 0.7,
                "prompt_tokens": 32, "output_tokens": 12 if quick else 48} for g in (1, 3)]

    def profile(folder: Path) -> None:
        measure_profile(["llama-68m", "llama-160m"], folder, device="cpu", threads=1, grid=GRID,
                        min_samples=2 if quick else 6, min_s=0.01 if quick else 0.1, passes=1 if quick else 3)

    profile(out / name)
    tcp.measure(configs, LINKS[:2] if quick else LINKS, out / "runs-tcp.jsonl", name, repeats=1 if quick else 3,
                probes="--probes" in sys.argv)
    profile(out / f"{name}-after")
    sys.argv = ["merge_grids.py", str(out / name), str(out / f"{name}-after")]
    merge()


if __name__ == "__main__":
    main()
