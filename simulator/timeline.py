"""Timelines: what each device and link direction did when, drawn from a run's job records."""

from __future__ import annotations

from pathlib import Path

from .plots import pyplot, save_png

COLORS = {"prefill": "#8c8c8c", "draft": "#4c9be8", "verify": "#e8804c", "decode": "#c44e52",
          "transfer": "#5cb85c", "retransmit": "#b8860b", "cancelled": "#d9d9d9", "batch": "#8172b2",
          "batch+prefill": "#64b5cd"}
OTHER = "#b07cc6"
SHOWN_JOBS = 60  # the default span: up to the start of the 60th job, where single steps are still apart


def span_s(jobs: list[tuple]) -> float:
    """Seconds from 0 to the start of the SHOWN_JOBS-th job (all of a shorter run), and at least
    the first job's end."""
    if not jobs:
        return 0.0
    starts = sorted(j[1] for j in jobs)
    first_end = min(j[2] for j in jobs)
    return max(starts[min(SHOWN_JOBS, len(starts)) - 1], first_end, 1e-9)


def draw(jobs: list[tuple], path: Path, title: str, until_s: float | None = None,
         batches: list | None = None) -> Path:
    """The timeline as a PNG (figure below)."""
    return save_png(figure(jobs, title, until_s, batches), path)


def figure(jobs: list[tuple], title: str, until_s: float | None = None, batches: list | None = None):
    """A Gantt chart, one row per server, of the jobs that start before `until_s` (default:
    `span_s`), one bar collection per row and kind of job. Steps of a batching server are
    coloured by whether they fed prompts and, where a bar is wide enough, labelled with their
    batch size (from `batches`, the run's BatchRecords)."""
    plt = pyplot()
    from matplotlib.patches import Patch

    until_s = span_s(jobs) if until_s is None else until_s
    steps = {b.start_s: b for b in batches or []}
    rows = list(dict.fromkeys(j[0] for j in jobs))
    bars: dict[tuple[int, str], list[tuple[float, float]]] = {}
    notes = []
    min_width = until_s * 1e-3  # zero-time jobs stay visible
    for server, start, end, label in jobs:
        if start > until_s:
            continue
        step = steps.get(start) if label == "batch" else None
        if step is not None and step.prefill_tokens:
            label = "batch+prefill"
        bars.setdefault((rows.index(server), label), []).append((start * 1000, max(end - start, min_width) * 1000))
        if step is not None and (end - start) > until_s / 90:
            notes.append(((start + end) / 2 * 1000, rows.index(server), str(step.batch)))
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(rows) + 1.4))
    for (y, label), spans in bars.items():
        ax.broken_barh(spans, (y - 0.3, 0.6), facecolors=COLORS.get(label, OTHER), edgecolor="white", linewidth=0.2)
    for x, y, text in notes:
        ax.text(x, y, text, ha="center", va="center", fontsize=6, color="white")
    ax.set_xlim(0, until_s * 1000)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlabel("simulated time (ms)" + ("; numbers: requests in the step" if notes else ""))
    ax.set_title(title, fontsize=10)
    used = sorted({label for _, label in bars})
    ax.legend(handles=[Patch(color=COLORS.get(k, OTHER), label=k) for k in used], fontsize=8,
              loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig
