"""A run's jobs as a Chrome trace-event file (the JSON that Perfetto and chrome://tracing open).

One process (the scenario), one thread per device and per link direction, in the order they first
worked; every job a complete event (`ph: X`, times in microseconds) named by what it did. Steps of
a batching server carry their step record (batch size, prefill tokens, drafted, accepted,
committed, preempted) as the event's args. Format: the Trace Event Format document
(https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU), which both
tools read.
"""

from __future__ import annotations

import json
from pathlib import Path

from .outputs import file_in_place
from .records import BATCH_FIELDS


def events(jobs: list[tuple], batches: list | None, title: str) -> dict:
    """The trace as a dict: `traceEvents` (metadata naming the process and threads, then one
    complete event per job, sorted by start) and `displayTimeUnit`."""
    tracks = {name: i + 1 for i, name in enumerate(dict.fromkeys(j[0] for j in jobs))}
    steps = {b.start_s: b for b in batches or []}
    out = [{"ph": "M", "name": "process_name", "pid": 1, "tid": 0, "args": {"name": title}}]
    out += [{"ph": "M", "name": "thread_name", "pid": 1, "tid": tid, "args": {"name": name}}
            for name, tid in tracks.items()]
    out += [{"ph": "M", "name": "thread_sort_index", "pid": 1, "tid": tid, "args": {"sort_index": tid}}
            for tid in tracks.values()]
    for server, start, end, label in sorted(jobs, key=lambda j: (j[1], tracks[j[0]])):
        event = {"ph": "X", "name": label, "cat": label, "pid": 1, "tid": tracks[server],
                 "ts": round(start * 1e6, 3), "dur": round(max(end - start, 0.0) * 1e6, 3)}
        step = steps.get(start) if label == "batch" else None
        if step is not None:
            event["args"] = {k: getattr(step, k) for k in BATCH_FIELDS if k not in ("start_s", "end_s")}
        out.append(event)
    return {"traceEvents": out, "displayTimeUnit": "ms"}


def write(jobs: list[tuple], batches: list | None, title: str, path: Path) -> Path:
    """Write the trace to `path` (through a temporary file beside it, renamed into place)."""
    with file_in_place(path) as tmp:
        tmp.write_text(json.dumps(events(jobs, batches, title), separators=(",", ":")))
    return path
