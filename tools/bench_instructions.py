"""Instructions of one warm simulation in two checkouts, by valgrind's callgrind: a count that does
not move with the load of a shared machine, for changes too small to time.

    python tools/bench_instructions.py OTHER_CHECKOUT [--repeats N] [--only LABEL]

For each workload (bench_engine's (a), one stream of 200,000 tokens; bench_serving's 1,000
requests; the serving scenario on the measured H100 profile; the edge fleet of a shared verifier;
DSD-Sim's fleet, where DSDSIM_DIR names a DSD-Sim checkout)
and each checkout, one process simulates once and another twice; the difference of
their instruction counts is one warm `engine.simulate` (imports and first-use costs cancel). Each
process runs with PYTHONHASHSEED=0: a random string hash moves the count by tenths of a percent.
Even so the count of one process moves by up to about 1% between repeats (addresses differ from
one process to the next), so each checkout is counted `--repeats` times, interleaved, and the
medians are compared beside the spread.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
WORKLOADS = {
    "bench_engine (a)": "import bench_engine as b; spec = b.scenario({'kind': 'closed_loop', 'users': 1}, 1, 200_000)",
    "bench_serving, 1,000 requests": "import bench_serving as b; spec = b.scenario(1000)",
    "serving-h100-speculative (measured profile)":
        "from simulator import scenario as sc; spec = sc.load('scenarios/serving-h100-speculative.yaml', [])",
    "edge-fleet-shared-verifier":
        "from simulator import scenario as sc; spec = sc.load('scenarios/edge-fleet-shared-verifier.yaml', [])",
    # the 20 simulations of the dsdsim kit's fleet (bench_dsdsim.py; SPECSIM_PEERS names the kits'
    # folder), counted only where DSDSIM_DIR names a DSD-Sim checkout (for its traces)
    "DSD-Sim's fleet, 20 verifiers and 80 drafters":
        "import os, random; sys.path.insert(0, os.path.join(os.environ['KIT'], 'dsdsim')); import specsim_dsd as k; "
        "rng = random.Random(123); specs = [k.build(4, 60, 123 + i, rng) for i in range(20)]",
}
KIT = Path(os.environ.get("SPECSIM_PEERS", HERE.parent / "shared" / "peers"))  # the peers' kits (default ../shared/peers)


def instructions(root: Path, setup: str, n: int) -> int:
    code = (f"import sys; sys.path[:0] = [{str(root)!r}, {str(root / 'benchmarks')!r}]\n{setup}\n"
            f"from simulator import engine\nfor _ in range({n}):\n"
            f"    for s in globals().get('specs', [globals().get('spec')]): engine.simulate(s, 'bench')\n")
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg", sys.executable, "-c",
                              code], capture_output=True, text=True, check=True,
                             env=dict(os.environ, PYTHONHASHSEED="0", KIT=str(KIT))).stderr  # hashing moves the count
    return int(re.search(r"Collected : (\d+)", out).group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path, help="the checkout to compare with")
    parser.add_argument("--repeats", type=int, default=3, help="pairs of processes per checkout, interleaved")
    parser.add_argument("--only", default="", help="the workloads whose label contains this (default: all)")
    args = parser.parse_args()
    other = args.other.resolve()
    for label, setup in WORKLOADS.items():
        if args.only not in label or ("DSD-Sim" in label and "DSDSIM_DIR" not in os.environ):
            continue
        counts: dict[Path, list[int]] = {other: [], HERE: []}
        for _ in range(args.repeats):
            for root in counts:
                counts[root].append(instructions(root, setup, 2) - instructions(root, setup, 1))
        a, b = (statistics.median(counts[root]) for root in (other, HERE))
        spread = max((max(v) - min(v)) / statistics.median(v) for v in counts.values())
        print(f"{label}: other {a:,.0f} instructions per simulation, this {b:,.0f}; this / other {b / a:.4f} "
              f"(medians of {args.repeats}; repeats spread by up to {spread:.1%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
