"""How the host probes of a session's runs behave: `python tools/host_probes.py SESSION...` (g, h).

For each session (calibration/measurements/runs-h200-hf-SESSION.jsonl, its rounds csv and profile):
the correlation of each run's target probe before and after it, the probes' p10/median/p90 per
round, and the profile's own time of the probed forward in each round (docs/calibration.md)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main(sessions: list[str]) -> None:
    for s in sessions:
        runs = [json.loads(line) for line in (ROOT / f"calibration/measurements/runs-h200-hf-{s}.jsonl").open()]
        before = [r["host_probe"]["target_ms"][0] for r in runs]
        after = [r["host_probe"]["target_ms"][1] for r in runs]
        context = runs[0]["host_probe"]["context_tokens"]
        rounds_csv = next((ROOT / f"calibration/results/h200-hf-{s}").glob("rounds-*.csv"))
        point = {int(r["round"]): float(r["latency_ms_p50"]) for r in csv.DictReader(rounds_csv.open())
                 if (r["model"], r["batch"], r["query_tokens"], r["context_tokens"]) == (runs[0]["target"], "1", "1",
                                                                                          str(context))}
        print(f"session {s}: target probe before/after a run correlate {np.corrcoef(before, after)[0, 1]:+.2f}")
        for rnd in sorted({r["round"] for r in runs}):
            v = [t for r in runs if r["round"] == rnd for t in r["host_probe"]["target_ms"]]
            p10, p50, p90 = np.percentile(v, [10, 50, 90])
            print(f"  round {rnd}: probes {p10:.1f} / {p50:.1f} / {p90:.1f} ms (p10 / median / p90); "
                  f"the profile's point that round {point.get(rnd, float('nan')):.1f} ms")


if __name__ == "__main__":
    main(sys.argv[1:] or ["g", "h"])
