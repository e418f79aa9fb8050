"""The report: summary figures from the request and step records, each defined by formula.

Per request (times in simulated seconds from the start of the run):
  ttft = first_token_s - arrival_s
  tpot = (finish_s - first_token_s) / (output_tokens - 1)   (requests with more than one token)
  e2e  = finish_s - arrival_s
Over the run:
  simulated_s              = time the last request finished
  throughput_tokens_per_s  = sum(output_tokens) / simulated_s
  tokens_per_step          = (sum(output_tokens) - prefills) / sum(steps)   (a prefill's token excluded:
                             prefills = requests + readmissions after a preemption, each a prefill again)
  acceptance_rate          = sum(accepted) / sum(drafted)
  requests_in_system_mean  = time-average of requests arrived and not finished (measured by the
                             engine; Little's law says it equals requests_per_s x mean e2e)
  devices.NAME.utilization = busy seconds / simulated_s; links.NAME.utilization likewise for the
                             busier direction (the link's own transmissions, retransmissions included);
                             busy seconds until the last request finished (devices.NAME.busy_s): work
                             still under way then (a draft no one will verify) is not the run's
  media.NAME.utilization   = likewise for a shared medium, all its links' transmissions together
                             (the key `media` appears only when some link names a medium)
With a batching server (strategy batched; from the batch records, records.BatchRecord):
  batching.steps           = batch steps; batching.decode_batch_mean = mean requests decoding in a
                             step that decodes; batching.drafted_per_request_step = drafted / their sum
  batching.preemptions     = requests preempted (KV cache dropped, prefilled again later)
  batching.kv_peak_fraction = most KV-cache tokens held at once / the tokens that fit beside the weights
With power figures (a device's `power_w`: idle and busy, in W):
  devices.NAME.energy_j    = busy W x busy_s + idle W x (simulated_s - busy_s)
  devices.NAME.joules_per_token = energy_j / output_tokens; joules_per_request likewise
  energy.joules            = the sum over the devices with power figures (energy.devices names them);
                             energy.joules_per_token, joules_per_request and tokens_per_joule from it
With edge drafters sharing a verifier (strategy shared_verifier; from its process):
  fleet.edges.I            = edge I's device, draft model, gamma, requests, output tokens and
                             goodput_tokens_per_s = its requests' output tokens / their seconds in the system
  fleet.users_jain_index   = (sum x)^2 / (n sum x^2) over the users' goodput x (1: all equal)
With a service-level objective (the scenario's `slo`: ttft_ms, tpot_ms, percentile p; a target left
out is not checked, and a one-token request has no tpot and meets that part):
  meets                    = ttft <= ttft_ms / 1000 and tpot <= tpot_ms / 1000   (per request)
  slo.attained             = requests that meet it / requests
  slo.goodput_tokens_per_s = sum(output_tokens of requests that meet it) / simulated_s
  slo.ttft_at_percentile_s = the p-th percentile of ttft over the requests (tpot likewise)
  slo.met                  = ttft_at_percentile_s <= ttft_ms / 1000 and tpot_at_percentile_s <= tpot_ms / 1000
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from .engine import Result
from .records import BATCH_FIELDS, STEP_FIELDS, RequestRecord
from .tallies import BatchTotals


def _stats(values: np.ndarray) -> dict:
    if values.size == 0:
        return {"mean": None, "p50": None, "p90": None, "p99": None}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"mean": float(values.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99)}


def meets(slo, ttft: np.ndarray, tpot: np.ndarray) -> np.ndarray:
    """Per request: does it meet the SLO (formula above)? `tpot` holds NaN for one-token requests."""
    ttft_s, tpot_s = slo.limits_s
    return (ttft <= ttft_s) & ~(tpot > tpot_s)  # NaN (no tpot) meets the tpot part


def slo_summary(slo, ttft: np.ndarray, tpot: np.ndarray, out: np.ndarray, simulated_s: float) -> dict:
    """The `slo` block of a report (formulas above). `tpot` holds NaN for one-token requests."""
    ok = meets(slo, ttft, tpot)
    defined = tpot[~np.isnan(tpot)]
    ttft_p = float(np.percentile(ttft, slo.percentile)) if ttft.size else None
    tpot_p = float(np.percentile(defined, slo.percentile)) if defined.size else None
    return _slo_block(slo, float(ok.mean()) if ok.size else None, float(out[ok].sum()), ttft_p, tpot_p, simulated_s)


def _slo_block(slo, attained, goodput_tokens: float, ttft_p, tpot_p, simulated_s: float) -> dict:
    ttft_s, tpot_s = slo.limits_s
    return {
        "ttft_ms": slo.ttft_ms,
        "tpot_ms": slo.tpot_ms,
        "percentile": slo.percentile,
        "attained": attained,
        "goodput_tokens_per_s": goodput_tokens / simulated_s if simulated_s > 0 else None,
        "ttft_at_percentile_s": ttft_p,
        "tpot_at_percentile_s": tpot_p,
        "met": (ttft_p is None or ttft_p <= ttft_s) and (tpot_p is None or tpot_p <= tpot_s),
    }


def _folded_slo(slo, cols, simulated_s: float) -> dict:
    """The `slo` block from folded columns (tallies.py): counts kept as requests finished."""
    h = cols.folded
    ttft_p = h["ttft"].percentiles([slo.percentile])[0] if h["ttft"].n else None
    tpot_p = h["tpot"].percentiles([slo.percentile])[0] if h["tpot"].n else None
    return _slo_block(slo, cols.attained / len(cols) if len(cols) else None, float(cols.goodput_tokens), ttft_p,
                      tpot_p, simulated_s)


def report(result: Result, name: str, strategy: str) -> dict:
    cols = result.columns  # per request, in id order: from the records, or streamed (tallies.py)
    n = len(cols)
    steps, drafted, accepted = cols.steps, cols.drafted, cols.accepted
    t = result.simulated_s
    slo = result.world.scenario.slo
    if cols.folded is None:
        arrival, first, finish, out = cols.arrival_s, cols.first_token_s, cols.finish_s, cols.output_tokens
        multi = out > 1
        total = float(out.sum())
        latency = {"ttft": _stats(first - arrival), "tpot": _stats((finish - first)[multi] / (out[multi] - 1)),
                   "e2e": _stats(finish - arrival)}
        slo_block = (lambda: slo_summary(slo, first - arrival, per_request_tpot(first, finish, out), out, t))
    else:  # past tallies.EXACT_LIMIT requests without records: histograms and counts
        total = float(cols.output_total)
        latency = {k: h.stats() for k, h in cols.folded.items()}
        slo_block = (lambda: _folded_slo(slo, cols, t))
    per_s = (lambda x: x / t) if t > 0 else (lambda x: None)
    devices = {name: {"utilization": per_s(d.server.run_busy_s), "busy_s": d.server.run_busy_s,
                      "jobs": d.server.jobs, "profile": d.profile.name, "provenance": d.profile.provenance}
               for name, d in result.world.devices.items()}
    energy = _energy(result.world.scenario, devices, t, total, n)
    links, media = {}, {}
    for link in result.world.links.values():
        busy = max(link.run_busy_s.values())
        links[link.name] = {"utilization": per_s(busy), "bytes": sum(link.bytes.values()),
                            "bytes_up": link.bytes["up"], "bytes_down": link.bytes["down"],
                            "messages": link.messages, "retransmissions": link.retransmissions}
        if link.medium is not None:
            m = link.medium
            media[m.name] = {"utilization": per_s(max(w.run_busy_s for w in m.wire.values())), "links": m.links}
    return {
        "scenario": name,
        "strategy": strategy,
        "requests": n,
        "output_tokens": int(total),
        "simulated_s": t,
        "throughput_tokens_per_s": per_s(total),
        "requests_per_s": per_s(n),
        "tokens_per_step": (total - n - _recomputes(result)) / steps if steps else None,
        "acceptance_rate": accepted / drafted if drafted else None,
        "requests_in_system_mean": per_s(result.in_system_area),
        "latency_s": latency,
        "devices": devices,
        "links": links,
        **({"media": media} if media else {}),
        **({"batching": _batching(result)} if result.serving is not None else {}),
        **({"energy": energy} if energy else {}),
        **(result.blocks or {}),
        **({"slo": slo_block()} if slo else {}),
        "warnings": result.warnings + ([] if t > 0 else ["the run takes no simulated time (every forward and "
                                                         "transfer is free): its rates are undefined (null)"]),
        "sim": {"wall_s": result.wall_s, "events": result.events},
    }


def joules(power, busy_s: float, simulated_s: float, gpus: int = 1) -> float:
    """A device's energy over the run: busy power while busy, idle power for the rest, for each of
    its GPUs (they run in lock step)."""
    return gpus * (power.busy * busy_s + power.idle * max(0.0, simulated_s - busy_s))


def _energy(scenario, devices: dict, simulated_s: float, tokens: float, requests: int) -> dict | None:
    """Adds energy_j and its per-token and per-request shares to each device with power figures;
    returns the run's energy block (None when no device has any)."""
    powered = [name for name in devices if scenario.devices[name].power_w is not None]
    if not powered:
        return None
    for name in powered:
        spec = scenario.devices[name]
        e = joules(spec.power_w, devices[name]["busy_s"], simulated_s, spec.gpus)
        devices[name].update({"energy_j": e, "joules_per_token": e / tokens if tokens else None,
                              "joules_per_request": e / requests if requests else None})
    total = sum(devices[name]["energy_j"] for name in powered)
    return {"joules": total, "joules_per_token": total / tokens if tokens else None,
            "joules_per_request": total / requests if requests else None,
            "tokens_per_joule": tokens / total if total > 0 else None, "devices": powered}


def per_request_tpot(first: np.ndarray, finish: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Per-request tpot, NaN where a request has one output token."""
    return np.where(out > 1, (finish - first) / np.maximum(out - 1, 1), np.nan)


def _recomputes(result) -> int:
    """Prefills beyond each request's first: a preempted request prefills again when readmitted, and
    that prefill commits its next token."""
    return result.serving.preemptions if result.serving is not None else 0


def _batching(result: Result) -> dict:
    b = result.world.batches  # the rows, or their running sums (tallies.py)
    b = b if isinstance(b, BatchTotals) else BatchTotals.of(b)
    server = result.serving
    return {"steps": b.steps, "decode_batch_mean": b.decoding / b.decoding_steps if b.decoding_steps else None,
            "drafted_per_request_step": b.drafted / b.decoding if b.decoding_steps else None,
            "preemptions": server.preemptions, "kv_capacity_tokens": server.capacity,
            "kv_peak_fraction": server.kv_peak / server.capacity}


TIMING_KEYS = ("sim",)  # fields that differ between identical runs
OUTPUTS = ("report.json", "requests.csv", "steps.csv", "batches.csv", "jobs.csv", "scenario.yaml")  # every file write_outputs may write


def write_outputs(folder: Path, rep: dict, result: Result, scenario: dict | None = None) -> list[Path]:
    """report.json, requests.csv and steps.csv (batches.csv with a batching server, jobs.csv when the
    run recorded its jobs, scenario.yaml when given the scenario's data) into `folder`; the run must
    have kept its records. The CLI writes them as one unit (outputs.py)."""
    import json

    from .formats import JOB_CSV_COLUMNS, SCENARIO_FILE
    from .tables import write_yaml

    if result.records is None:
        raise ValueError("the run kept no records to write: simulate with keep_records=True")
    folder.mkdir(parents=True, exist_ok=True)
    req_fields = [f.name for f in fields(RequestRecord)]
    written = []

    def put(name: str, write) -> None:
        with (folder / name).open("w", newline="") as f:
            write(f)
        written.append(folder / name)

    def requests_csv(f):
        w = csv.writer(f)
        w.writerow(req_fields)
        w.writerows([_cell(v) for v in asdict(r).values()] for r in result.records)

    def steps_csv(f):
        w = csv.writer(f)
        w.writerow(STEP_FIELDS)
        w.writerows(result.world.steps)

    def batches_csv(f):
        w = csv.writer(f)
        w.writerow(BATCH_FIELDS)
        w.writerows(result.world.batches)

    def jobs_csv(f):
        w = csv.writer(f)
        w.writerow(JOB_CSV_COLUMNS)
        w.writerows(result.jobs)

    put("report.json", lambda f: json.dump(rep, f, indent=2, default=_json_default))
    put("requests.csv", requests_csv)
    put("steps.csv", steps_csv)
    if result.serving is not None:
        put("batches.csv", batches_csv)
    if result.jobs is not None:
        put("jobs.csv", jobs_csv)
    if scenario is not None:
        written.append(write_yaml(folder / SCENARIO_FILE, scenario))
    return written


def _cell(v):
    return "" if isinstance(v, float) and math.isnan(v) else v


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(type(o))
