"""The report: summary figures from the request and step records, each defined by formula.

Per request (times in simulated seconds from the start of the run):
  ttft = first_token_s - arrival_s
  tpot = (finish_s - first_token_s) / (output_tokens - 1)   (requests with more than one token)
  e2e  = finish_s - arrival_s
Over the run:
  simulated_s              = time the last request finished
  throughput_tokens_per_s  = sum(output_tokens) / simulated_s
  tokens_per_step          = (sum(output_tokens) - requests) / sum(steps)   (prefill's token excluded)
  acceptance_rate          = sum(accepted) / sum(drafted)
  requests_in_system_mean  = time-average of requests arrived and not finished (measured by the
                             engine; Little's law says it equals requests_per_s x mean e2e)
  devices.NAME.utilization = busy seconds / simulated_s; links.NAME.utilization likewise for the
                             busier direction (the link's own transmissions, retransmissions included)
  media.NAME.utilization   = likewise for a shared medium, all its links' transmissions together
                             (the key `media` appears only when some link names a medium)
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from .engine import STEP_FIELDS, RequestRecord, Result


def _stats(values: np.ndarray) -> dict:
    if values.size == 0:
        return {"mean": None, "p50": None, "p90": None, "p99": None}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"mean": float(values.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99)}


def report(result: Result, name: str, strategy: str) -> dict:
    recs = result.records
    arrival = np.array([r.arrival_s for r in recs])
    first = np.array([r.first_token_s for r in recs])
    finish = np.array([r.finish_s for r in recs])
    out = np.array([r.output_tokens for r in recs])
    steps = sum(r.steps for r in recs)
    drafted = sum(r.drafted for r in recs)
    accepted = sum(r.accepted for r in recs)
    multi = out > 1
    t = result.simulated_s
    per_s = (lambda x: x / t) if t > 0 else (lambda x: None)
    links, media = {}, {}
    for link in result.world.links.values():
        busy = max(link.busy_s.values())
        links[link.name] = {"utilization": per_s(busy), "bytes": sum(link.bytes.values()),
                            "bytes_up": link.bytes["up"], "bytes_down": link.bytes["down"],
                            "messages": link.messages, "retransmissions": link.retransmissions}
        if link.medium is not None:
            m = link.medium
            media[m.name] = {"utilization": per_s(max(w.busy_s for w in m.wire.values())), "links": m.links}
    return {
        "scenario": name,
        "strategy": strategy,
        "requests": len(recs),
        "output_tokens": int(out.sum()),
        "simulated_s": t,
        "throughput_tokens_per_s": per_s(float(out.sum())),
        "requests_per_s": per_s(len(recs)),
        "tokens_per_step": (float(out.sum()) - len(recs)) / steps if steps else None,
        "acceptance_rate": accepted / drafted if drafted else None,
        "requests_in_system_mean": per_s(result.in_system_area),
        "latency_s": {
            "ttft": _stats(first - arrival),
            "tpot": _stats((finish - first)[multi] / (out[multi] - 1)),
            "e2e": _stats(finish - arrival),
        },
        "devices": {name: {"utilization": per_s(d.server.busy_s), "busy_s": d.server.busy_s,
                           "jobs": d.server.jobs, "profile": d.profile.name,
                           "provenance": d.profile.provenance}
                    for name, d in result.world.devices.items()},
        "links": links,
        **({"media": media} if media else {}),
        "warnings": result.warnings,
        "sim": {"wall_s": result.wall_s, "events": result.events},
    }


TIMING_KEYS = ("sim",)  # fields that differ between identical runs


def write_outputs(folder: Path, rep: dict, result: Result) -> list[Path]:
    """report.json, requests.csv and steps.csv, each written whole or not at all."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    req_fields = [f.name for f in fields(RequestRecord)]
    written = []

    def put(name: str, write) -> None:
        tmp = folder / f".{name}.tmp"
        with tmp.open("w", newline="") as f:
            write(f)
        tmp.replace(folder / name)
        written.append(folder / name)

    def requests_csv(f):
        w = csv.writer(f)
        w.writerow(req_fields)
        w.writerows([_cell(v) for v in asdict(r).values()] for r in result.records)

    def steps_csv(f):
        w = csv.writer(f)
        w.writerow(STEP_FIELDS)
        w.writerows(result.steps)

    put("report.json", lambda f: json.dump(rep, f, indent=2, default=_json_default))
    put("requests.csv", requests_csv)
    put("steps.csv", steps_csv)
    return written


def _cell(v):
    return "" if isinstance(v, float) and math.isnan(v) else v


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(type(o))
