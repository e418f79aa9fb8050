"""Timelines: what each device and link direction did when, drawn from a run's job records."""

from __future__ import annotations

from pathlib import Path

from .plots import pyplot, save_png

COLORS = {"prefill": "#8c8c8c", "draft": "#4c9be8", "verify": "#e8804c", "decode": "#e8804c",
          "transfer": "#5cb85c"}


def draw(jobs: list[tuple], path: Path, title: str, until_s: float | None = None) -> Path:
    """The timeline as a PNG (figure below)."""
    return save_png(figure(jobs, title, until_s), path)


def figure(jobs: list[tuple], title: str, until_s: float | None = None):
    """A Gantt chart, one row per server, of the jobs that start before `until_s`
    (default: the first 5% of the run, at least the first 50 jobs)."""
    plt = pyplot()
    from matplotlib.patches import Patch

    if until_s is None:
        until_s = span_s(jobs)
    shown = [j for j in jobs if j[1] <= until_s]
    rows = list(dict.fromkeys(j[0] for j in jobs))
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(rows) + 1.4))
    for server, start, end, label in shown:
        y = rows.index(server)
        width = max(end - start, until_s * 1e-4)  # zero-time jobs stay visible as hairlines
        ax.barh(y, width * 1000, left=start * 1000, height=0.6, color=COLORS.get(label, "#b07cc6"),
                edgecolor="black", linewidth=0.3)
    ax.set_yticks(range(len(rows)), rows)
    ax.invert_yaxis()
    ax.set_xlabel("simulated time (ms)")
    ax.set_title(title, fontsize=10)
    used = sorted({j[3] for j in shown})
    ax.legend(handles=[Patch(color=COLORS.get(k, "#b07cc6"), label=k) for k in used], fontsize=8,
              loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def span_s(jobs: list[tuple]) -> float:
    """The default span: the first 5% of the run, at least the first 50 jobs."""
    end = max((j[2] for j in jobs), default=0.0)
    return max(0.05 * end, sorted(j[1] for j in jobs)[min(49, len(jobs) - 1)] if jobs else 0.0)
