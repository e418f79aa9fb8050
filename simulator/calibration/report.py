"""Calibration reports: a per-run table, summary errors, a markdown file and a scatter plot."""

from __future__ import annotations

from pathlib import Path

from ..plots import pyplot, save_png
from .compare import DRIFT, Prediction, summarize


def rows(preds: list[Prediction]) -> list[list[str]]:
    out = []
    for p in preds:
        r = p.run
        out.append([r.target, r.draft or "-", str(r.gamma), r.mode, "-" if r.alpha is None else f"{r.alpha:g}",
                    f"{r.prompt_tokens}/{r.output_tokens}", str(r.batch), r.target_profile + ("" if (r.draft_profile or r.target_profile)
                    == r.target_profile else f" + {r.draft_profile}") + (f" over {r.link_label}" if r.link else "")
                    + (f", tp {r.tp}" if r.tp > 1 else "") + (f", {r.pp} stages" if r.pp > 1 else ""),
                    f"{r.tokens_per_s:.1f}", f"{p.predicted_tokens_per_s:.1f}", f"{100 * p.error:+.1f}%"])
    return out


HEADER = ["target", "draft", "gamma", "mode", "alpha", "prompt/output", "batch", "profiles", "measured tok/s",
          "predicted tok/s", "error"]


def run_rows(preds: list[Prediction]) -> list[dict]:
    """One flat row per run: what was measured, what was predicted, and how steady the run was."""
    out = []
    for p in preds:
        r = p.run
        extra = r.model_extra or {}
        out.append({"target": r.target, "draft": r.draft, "gamma": r.gamma, "mode": r.mode, "alpha": r.alpha,
                    "prompt_tokens": r.prompt_tokens, "output_tokens": r.output_tokens, "batch": r.batch,
                    "target_profile": r.target_profile, "draft_profile": r.draft_profile, "link": r.link_label,
                    "tp": r.tp, "pp": r.pp, "host_factor": extra.get("host_factor"),
                    "engine": extra.get("engine", "specsim"), "execution": extra.get("execution"),
                    "repeat": extra.get("repeat"), "round": extra.get("round"),
                    "measured_tokens_per_s": r.tokens_per_s, "predicted_tokens_per_s": p.predicted_tokens_per_s,
                    "error": p.error, "steps": p.steps, "target_forwards": p.target_forwards,
                    "draft_forwards": p.draft_forwards, "drift": p.drift})
    return out


def summary_line(preds: list[Prediction], baselines: list[Prediction] = ()) -> str:
    s = summarize(preds, baselines)
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    wrong = s["speedup_called_wrong"]
    steady = (f"; steadiness: {s['drifted']} of {s['steadiness_tested']} runs drifted by more than "
              f"{100 * DRIFT:.0f}% within the run (median drift {pct(s['drift_median'])})"
              if s["steadiness_tested"] else "")
    return (f"{s['runs']} runs: median |error| {100 * s['median_abs_error']:.1f}%, p90 {100 * s['p90_abs_error']:.1f}%, "
            f"mean signed {100 * s['mean_signed_error']:+.1f}%; {s['configurations']} configurations (median of "
            f"repeats): median |error| {100 * s['config_median_abs_error']:.1f}%, p90 "
            f"{100 * s['config_p90_abs_error']:.1f}%; repeat spread (max-min over median) of tokens/s "
            f"{pct(s['repeat_spread_median'])}, of measured/predicted {pct(s['timing_spread_median'])}{steady}"
            + (f"; speculation faster than autoregressive called right for {s['speedup_calls'] - len(wrong)} of "
               f"{s['speedup_calls']} configurations" + (f" (wrong: {'; '.join(wrong)})" if wrong else "")
               if s["speedup_calls"] else ""))


def markdown(title: str, sections: dict[str, list[Prediction]], notes: list[str] = ()) -> str:
    lines = [f"# {title}", ""]
    lines += list(notes) + ([""] if notes else [])
    for name, preds in sections.items():
        lines += [f"## {name}", "", summary_line(preds), "", "| " + " | ".join(HEADER) + " |",
                  "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(row) + " |" for row in rows(preds)]
        lines.append("")
    return "\n".join(lines)


def scatter(sections: dict[str, list[Prediction]], path: Path, title: str) -> Path:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5.5, 5))
    hi = 0.0
    for name, preds in sections.items():
        xs = [p.run.tokens_per_s for p in preds]
        ys = [p.predicted_tokens_per_s for p in preds]
        hi = max(hi, *xs, *ys)
        ax.scatter(xs, ys, s=14, alpha=0.7, label=name)
    ax.plot([0, hi * 1.05], [0, hi * 1.05], "k--", lw=1, label="y = x")
    ax.set_xlabel("measured tokens/s")
    ax.set_ylabel("predicted tokens/s")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)
