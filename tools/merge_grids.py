"""Merge repeated measurements of a profile grid: the per-point median over sessions.

  python tools/merge_grids.py BASE_FOLDER SESSION_FOLDER... 

For every model CSV in BASE_FOLDER, each grid point that also appears in the session folders
gets the median of its latency_ms_p50 over all sessions (BASE included); p10 and p90 become the
min and max over sessions of their own p10 and p90, samples the total. A slow spell of a shared
machine lasts longer than one grid point, so a point's own median can be off by tens of
percent; the median over sessions measured minutes apart is not.
"""

from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path


def key(row: dict) -> tuple:
    return tuple(int(float(row[c])) for c in ("batch", "query_tokens", "context_tokens"))


def main() -> None:
    base, sessions = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
    for path in sorted(base.glob("*.csv")):
        with path.open() as f:
            reader = csv.DictReader(f)
            fields, rows = reader.fieldnames, list(reader)
        others = []
        for s in sessions:
            if (s / path.name).is_file():
                with (s / path.name).open() as f:
                    others.append({key(r): r for r in csv.DictReader(f)})
        merged = 0
        for row in rows:
            same = [o[key(row)] for o in others if key(row) in o]
            if not same:
                continue
            group = [row] + same
            row["latency_ms_p50"] = round(statistics.median(float(r["latency_ms_p50"]) for r in group), 4)
            row["latency_ms_p10"] = min(float(r["latency_ms_p10"]) for r in group)
            row["latency_ms_p90"] = max(float(r["latency_ms_p90"]) for r in group)
            row["samples"] = sum(int(float(r["samples"])) for r in group)
            merged += 1
        tmp = path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
        tmp.replace(path)
        print(f"{path.name}: {merged} of {len(rows)} points merged over {1 + len(others)} sessions")


if __name__ == "__main__":
    main()
