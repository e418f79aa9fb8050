"""Engine speed of two checkouts measured in one run, their runs alternating, so that a busy or
throttled machine slows both alike.

    python tools/bench_side_by_side.py OTHER_CHECKOUT [--rounds 6] [--cpu 0]

Each round runs, in a fresh process pinned to one core (`taskset -c CPU`), first in OTHER_CHECKOUT
and then in this one (the order swapped every other round): benchmarks/bench_engine.py
--repeats 3, and benchmarks/bench_serving.py --repeats 1 --sizes 1000 10000. It prints, per
figure, the best and the median over the rounds of each checkout and their ratio (this / other;
above 1 is faster here). The best is the figure least disturbed by other work on the machine.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
RUNS = (("bench_engine.py", ["--repeats", "3"]), ("bench_serving.py", ["--repeats", "1", "--sizes", "1000", "10000"]))


def figures(root: Path, cpu: int) -> dict[str, float]:
    """Simulated tokens per wall second of each benchmark line, run in checkout `root`."""
    out: dict[str, float] = {}
    for script, args in RUNS:
        cmd = ["taskset", "-c", str(cpu), sys.executable, str(root / "benchmarks" / script), *args]
        text = subprocess.run(cmd, cwd=root, env=dict(os.environ, PYTHONPATH=str(root)), check=True,
                              capture_output=True, text=True).stdout
        for line in text.splitlines():
            label, rate = _figure(line)
            if label is not None:
                out[f"{script[6:-3]} {label}"] = rate
    return out


def _figure(line: str) -> tuple[str | None, float]:
    """(label, tokens per wall second) of a benchmark's output line, or (None, 0)."""
    m = re.match(r"^(\([ab]\) [^:]+?):.*?median ([\d,]+)", line)  # bench_engine, bench_serving (a)
    if m is None:
        m = re.match(r"^(\(b\)\s+[\d,]+ requests):.*?, ([\d,]+) tokens/s", line)  # bench_serving (b)
    if m is None:
        return None, 0.0
    return " ".join(m.group(1).split()), float(m.group(2).replace(",", ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("other", type=Path, help="the checkout to compare with (e.g. a worktree of main)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--cpu", type=int, default=0)
    args = parser.parse_args()
    runs: dict[str, dict[str, list[float]]] = {"other": {}, "this": {}}
    for i in range(args.rounds):
        order = (("other", args.other.resolve()), ("this", HERE))
        for name, root in order if i % 2 == 0 else order[::-1]:
            for label, rate in figures(root, args.cpu).items():
                runs[name].setdefault(label, []).append(rate)
        print(f"round {i + 1} of {args.rounds} done", file=sys.stderr)
    print(f"simulated tokens per wall second, {args.rounds} alternating rounds, one core each "
          f"(other: {args.other}; this: {HERE})")
    for label in runs["this"]:
        a, b = runs["other"][label], runs["this"][label]
        print(f"{label}: other best {max(a):,.0f} median {statistics.median(a):,.0f}; this best {max(b):,.0f} "
              f"median {statistics.median(b):,.0f}; ratio best {max(b) / max(a):.3f}, "
              f"median {statistics.median(b) / statistics.median(a):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
