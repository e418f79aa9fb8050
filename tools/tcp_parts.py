"""Where the time of a TCP calibration run goes, step by step, beside what the simulator charges.

  SPECSIM_PROFILE_PATH=FOLDER python tools/tcp_parts.py FOLDER/runs-tcp.jsonl

For each link and gamma, the medians over every step of every run of: the drafting (measured in
the drafting process, from the step's first draft forward to its drafts sent), the verification
(measured in the target's process, from the drafts read to the verdict ready to send; session
h200-tcp-graph-b timed the send too) and the rest of
the step's wait (the messages: loopback, proxy, both hops), each beside the simulator's charge for
it: the profile's draft forwards (the first at query 1; no per-forward overheads), the profile's
verification forward of g + 1 tokens, and the link's two messages (latency each way, plus
(4 + bytes) x 8 / bandwidth). Times in ms.
"""

from __future__ import annotations

import json
import statistics as st
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from simulator import catalog
from simulator.profiles import open_profile


def main() -> None:
    path = Path(sys.argv[1])
    runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    runs = [r for r in runs if r.get("link") and r.get("step_verify_s")]
    if not runs:
        sys.exit(f"{path}: no runs over a link with per-step parts")
    fns: dict = {}

    def ms(profile: str, model: str, query: int, context: int) -> float:
        if (profile, model) not in fns:
            fns[(profile, model)] = open_profile(profile, "profile", str(path)).ms_fn(model, model, catalog.PRESETS[model])
        return float(np.asarray(fns[(profile, model)](1, query, np.array([context]))).ravel()[0])

    rows = defaultdict(lambda: defaultdict(list))
    for r in runs:
        link = r["link"]
        key = (link["bandwidth_mbps"], link["latency_ms"], r["gamma"])
        out, pos = 1, r["prompt_tokens"]
        n = r["output_tokens"]
        for k, d, w, v in zip(r["accepted"], r["step_draft_s"], r["step_wait_s"], r["step_verify_s"]):
            g = max(0, min(r["gamma"], n - out - 1))
            draft = sum(ms(r["draft_profile"], r["draft"], 1, pos + j) for j in range(g))
            verify = ms(r["target_profile"], r["target"], g + 1, pos)
            wire = sum(8 * (4 + b) / (link["bandwidth_mbps"] * 1e3) for b in (4 * g, 8))  # ms
            net = 2 * link["latency_ms"] + wire
            cell = rows[key]
            cell["draft"].append((1000 * d, draft))
            cell["verify"].append((1000 * v, verify))
            cell["messages"].append((1000 * (w - v), net))
            new = min(k + 1, n - out)
            out, pos = out + new, pos + new
    print("| link | gamma | steps | draft measured / charged | verify measured / charged | messages measured / charged |")
    print("|---|---|---|---|---|---|")
    for (bw, lat, g), cell in sorted(rows.items()):
        parts = [f"{st.median(m for m, _ in cell[p]):.3f} / {st.median(c for _, c in cell[p]):.3f}"
                 for p in ("draft", "verify", "messages")]
        print(f"| {bw:g} Mbit/s, {lat:g} ms | {g} | {len(cell['draft'])} | " + " | ".join(parts) + " |")


if __name__ == "__main__":
    main()
