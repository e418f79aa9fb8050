"""Peak memory of a run with no records asked for (as `specsim run` without --out), against requests.

One cheap scenario: autoregressive llama2-7b on a constant profile (10 ms per forward), one
closed-loop user, prompts of 16 tokens and outputs of 8 (7 decoding steps a request), simulated
with 10^4, 10^5 and 10^6 requests, each in a fresh Python process so one size's memory cannot
hide another's. Prints, per size, the peak resident set size of that process (getrusage's
ru_maxrss), the same for a process that only imports and parses (the baseline), the peak above
it per request, and the run's wall time.

Run: python benchmarks/memory_flat.py [--sizes 10000 100000 1000000] [--keep-records] [--drawn]
(--keep-records: the same runs keeping every request and step record, as --out does; --drawn:
Poisson arrivals at 5 per second (the device 40% busy) and prompt and output lengths drawn from lognormals of median
16 and 8, which the workload draws up front, 8 bytes each a request).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, resource, sys, time
from simulator import engine, metrics
from simulator import scenario as sc

requests, keep, drawn = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3] == "1"
workload = {"arrival": {"kind": "closed_loop", "users": 1}, "requests": max(requests, 1),
            "prompt_tokens": 16, "output_tokens": 8}
if drawn:
    workload |= {"arrival": {"kind": "poisson", "rate_per_s": 5.0},
                 "prompt_tokens": {"kind": "lognormal", "median": 16, "sigma": 0.5, "low": 1, "high": 64},
                 "output_tokens": {"kind": "lognormal", "median": 8, "sigma": 0.5, "low": 2, "high": 32}}
spec = sc.parse({
    "name": "memory",
    "models": {"target": {"preset": "llama2-7b"}},
    "devices": {"gpu": {"profile": {"kind": "constant", "forward_ms": {"target": 10.0}}}},
    "strategy": {"kind": "autoregressive", "target": {"model": "target", "device": "gpu"}},
    "workload": workload,
}, "memory")
wall = 0.0
if requests:
    t0 = time.perf_counter()
    result = engine.simulate(spec, "memory", keep_records=keep)
    rep = metrics.report(result, spec.name, spec.strategy.kind)
    wall = time.perf_counter() - t0
    assert rep["requests"] == requests
print(json.dumps({"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "wall_s": wall}))
"""


def measure(requests: int, keep: bool, drawn: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(requests), "1" if keep else "0", "1" if drawn else "0"],
                         cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--keep-records", action="store_true", help="keep every record, as --out does")
    parser.add_argument("--drawn", action="store_true", help="Poisson arrivals and lognormal lengths")
    args = parser.parse_args()
    base = measure(0, args.keep_records, args.drawn)["peak_mib"]
    mode = ("every record kept" if args.keep_records else "no records asked for") + \
        (", arrivals and lengths drawn" if args.drawn else "")
    print(f"{mode}; baseline (imports and parsing only): peak RSS {base:.1f} MiB")
    print(f"{'requests':>10} {'peak RSS MiB':>13} {'above baseline MiB':>19} {'bytes/request':>14} {'wall s':>8}")
    for n in args.sizes:
        m = measure(n, args.keep_records, args.drawn)
        above = m["peak_mib"] - base
        print(f"{n:>10,} {m['peak_mib']:>13.1f} {above:>19.1f} {above * 2**20 / n:>14.1f} {m['wall_s']:>8.1f}",
              flush=True)


if __name__ == "__main__":
    main()
