"""One self-contained HTML page of a run, sweep or plan output folder (`specsim report`, `--report`).

The page is built from the folder's files alone, so `specsim report DIR` and `--report` give the same:
  run:   report.json (the headline figures beside the closed form, warnings), requests.csv (latency
         CDFs), jobs.csv (the timeline, when the run recorded its jobs), per-device utilization
  sweep: summary.csv (per swept key the curves of sweep.py, and the configurations ranked by throughput)
  plan:  plan.csv (the bars of plan.py and the ranking table)
and in each, scenario.yaml (the scenario as it ran). Charts are matplotlib figures inlined as SVG,
text drawn as paths: no script, no font and no file is fetched, so the page opens offline. Every
piece of text read from the folder is escaped.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from pathlib import Path

import numpy as np

from . import __version__
from .outputs import file_in_place
from .render import fmt as _fmt, ms as _ms, report_rows  # the terminal's formatting, so both read alike
from .errors import InputError
from .formats import SCENARIO_FILE
from .plots import pyplot

KINDS = {"report.json": "run", "summary.csv": "sweep", "plan.csv": "plan"}  # the file that says which
TIMELINE_JOBS = 1500  # the timeline draws at most this many jobs, so the page stays small
CDF_POINTS = 400  # a CDF is drawn through this many points at most
NUMBER = re.compile(r"^[-+0-9.,e± /]+( \(infeasible\))?$")  # cells of figures: right-aligned
RUN_FIELDS = ("scenario", "strategy", "requests", "simulated_s", "throughput_tokens_per_s", "tokens_per_step",
              "acceptance_rate", "latency_s.ttft", "latency_s.tpot", "latency_s.e2e", "devices", "links",
              "estimate.throughput_tokens_per_s", "estimate.tokens_per_step", "estimate.latency_s",
              "estimate.utilization")  # in report.json
STYLE = """body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:72em;
padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em}
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}pre{background:#f7f7f7;padding:1em;
overflow:auto}svg{max-width:100%;height:auto}figure{margin:1em 0}.warn{color:#a04000}"""


def check_target(path: Path, option: str = "--report", out: Path | None = None) -> None:
    """Refuse, before any work, an HTML path that cannot be written (its folder exists, or is `out`, the
    output folder the command is about to make)."""
    folder_ok = path.parent.is_dir() or (out is not None and path.parent.resolve() == out.resolve())
    if path.suffix.lower() not in (".html", ".htm") or not folder_ok or path.is_dir():
        raise InputError(path, "", f"{option} must be an .html file in an existing folder")


def kind(folder: Path) -> str:
    if not folder.is_dir():
        raise InputError(folder, "", "not a folder (expected what specsim run, sweep or plan wrote with --out)")
    for name, k in KINDS.items():
        if (folder / name).is_file():
            return k
    raise InputError(folder, "", "not a run, sweep or plan output folder (no report.json, summary.csv or plan.csv)")


def render(folder: Path) -> str:
    """The page of an output folder, as text."""
    k = kind(folder)
    try:
        title, body = {"run": _run, "sweep": _sweep, "plan": _plan}[k](folder)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:  # a file edited out of shape
        main = next(name for name, kind_ in KINDS.items() if kind_ == k)
        raise InputError(folder / main, "", f"not what specsim {k} writes ({type(exc).__name__}: {exc})") from None
    scenario = folder / SCENARIO_FILE
    text = _read(scenario) if scenario.is_file() else None
    body += "<h2>Scenario</h2>" + (f"<pre>{html.escape(text)}</pre>" if text is not None else
                                   f"<p>The folder has no {SCENARIO_FILE}.</p>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
            f"<body><h1>{html.escape(title)}</h1>{body}<hr><p><small>specsim {html.escape(__version__)}, from "
            f"{html.escape(folder.resolve().name)}/</small></p></body></html>\n")


def write(folder: Path, path: Path) -> Path:
    """Render, then write whole or not at all (a temporary file, then renamed)."""
    text = render(folder)
    try:
        with file_in_place(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(path, "", f"cannot write the report ({exc.strerror or exc})") from None
    return path


# ---------------------------------------------------------------- the three pages


def _run(folder: Path) -> tuple[str, str]:
    path = folder / "report.json"
    rep = _read_json(path)
    for field in RUN_FIELDS:
        node = rep
        for part in field.split("."):
            if not isinstance(node, dict) or part not in node:
                raise InputError(path, field, "required field is missing")
            node = node[part]
    body = "<h2>Headline figures</h2>" + _table(("", "simulated", "closed form"), report_rows(rep))
    body += "".join(f'<p class="warn">warning: {html.escape(str(w))}</p>' for w in rep.get("warnings", []))
    requests = _read_csv(folder / "requests.csv", ("arrival_s", "first_token_s", "finish_s", "output_tokens"))
    body += "<h2>Latency</h2>" + _svg(_cdf_figure(requests, rep["estimate"]["latency_s"]), "cdf", "latency CDFs")
    body += "<h2>Utilization</h2>" + _svg(_utilization_figure(rep), "util", "utilization")
    if (folder / "jobs.csv").is_file():
        from . import timeline

        read = _read_csv(folder / "jobs.csv", ("start_s", "end_s"), ("server", "label"), ("server", "label"))
        jobs = [(j["server"], j["start_s"], j["end_s"], j["label"]) for j in read]
        starts = sorted(j[1] for j in jobs)
        until = min(timeline.span_s(jobs), starts[min(TIMELINE_JOBS, len(starts)) - 1]) if jobs else None
        body += "<h2>Timeline</h2>" + _svg(timeline.figure(jobs, f"{rep['scenario']}: {rep['strategy']}", until),
                                           "timeline", "timeline")
    return f"{rep['scenario']} ({rep['strategy']}): run report", body


def _sweep(folder: Path) -> tuple[str, str]:
    from . import grid
    from . import sweep as sw

    path = folder / "summary.csv"
    summ, keys = _rows_with_keys(path, "runs", ("runs",))
    axes = [grid.parse_axis(f"{k}={','.join(dict.fromkeys(row[k] for row in summ))}") for k in keys]  # as swept
    repeats = int(max((row["runs"] or 0) for row in summ)) if summ else 0
    body = "<h2>Curves</h2>" + "".join(_svg(sw.figure(axes, repeats, summ, a), f"sweep{i}", a.key)
                                       for i, a in enumerate(axes)) if summ else ""
    metrics = [(m, t, s) for m, (t, s) in sw.PLOTTED.items() if any(f"{m}.mean" in r for r in summ)]
    ranked = sorted(summ, key=lambda r: -(r.get("throughput_tokens_per_s.mean") or 0.0))
    rows = [(str(i), *(r[k] for k in keys), _fmt(r["runs"]), *(_mean_ci(r, m, s) for m, _, s in metrics))
            for i, r in enumerate(ranked, 1)]
    body += "<h2>Configurations, by throughput</h2>" + _table(("rank", *keys, "runs", *(t for _, t, _ in metrics)),
                                                             rows)
    return f"{_name_and_slo(folder)[0]}: sweep of {len(summ)} configuration(s)", body


def _plan(folder: Path) -> tuple[str, str]:
    from . import grid
    from . import plan as pl

    path = folder / "plan.csv"
    rows, keys = _rows_with_keys(path, "feasible", ("feasible", "sustained_rate_per_s"), ("rank_rate",))
    name, slo = _name_and_slo(folder)
    title = pl.title(name, slo) if slo is not None else f"{name}: highest sustained rate"
    labels = [grid.label({k: r[k] for k in keys}) for r in rows]
    body = "<h2>Sustained rate</h2>" + (_svg(pl.figure(labels, rows, title, slo.percentile if slo else None), "plan", "plan") if rows else "")
    p = f"p{slo.percentile:g}" if slo is not None else "percentile"
    table = [(_fmt(r["rank_rate"]), *(r[k] for k in keys),
              _fmt(r["sustained_rate_per_s"]) if r["feasible"] else "0 (infeasible)",
              _fmt(r.get("throughput_tokens_per_s")),
              " / ".join(_ms(r.get(f"{k}_at_percentile_s")) for k in ("ttft", "tpot", "e2e")),
              _fmt(r.get("usd_per_hour")), _fmt(r.get("tokens_per_usd")), _fmt(r.get("rank_tokens_per_usd")),
              _fmt(r.get("tokens_per_joule")), _fmt(r.get("rank_tokens_per_joule")),
              _fmt(r.get("rank_latency"))) for r in sorted(rows, key=lambda r: r["rank_rate"] or 0)]
    body += "<h2>Ranking</h2>" + _table(("rank by rate", *keys, "requests/s", "tokens/s",
                                         f"{p} TTFT / TPOT / E2E (ms)", "USD/h", "tokens/USD",
                                         "rank by tokens/USD", "tokens/J", "rank by tokens/J", "rank by latency"),
                                        table)
    return title, body


# ---------------------------------------------------------------- charts


def _cdf_figure(requests: list[dict], estimate: dict):
    from .metrics import per_request_tpot

    col = {k: np.array([r[k] for r in requests], dtype=float) for k in ("arrival_s", "first_token_s", "finish_s",
                                                                        "output_tokens")}
    tpot = per_request_tpot(col["first_token_s"], col["finish_s"], col["output_tokens"])
    series = {"ttft": col["first_token_s"] - col["arrival_s"], "tpot": tpot[~np.isnan(tpot)],
              "e2e": col["finish_s"] - col["arrival_s"]}
    series = {k: v[~np.isnan(v)] for k, v in series.items() if v[~np.isnan(v)].size}
    fig, panels = pyplot().subplots(1, max(1, len(series)), figsize=(4 * max(1, len(series)), 3.2), squeeze=False)
    for ax, (key, values) in zip(panels.flat, series.items()):
        x, n = np.sort(values), values.size
        keep = np.unique(np.linspace(0, n - 1, min(n, CDF_POINTS)).round().astype(int))  # ends included
        ax.plot(np.r_[x[0], x[keep]] * 1000, np.r_[0.0, (keep + 1) / n], drawstyle="steps-post", label="simulated")
        if estimate.get(key) is not None:
            ax.axvline(estimate[key] * 1000, color="#e8804c", linestyle="--", label="closed form (mean)")
        ax.set_xlabel(f"{key.upper()} (ms)")
        ax.set_ylabel("fraction of requests")
        ax.grid(alpha=0.3)
    if series:
        panels.flat[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def _utilization_figure(rep: dict):
    est = rep.get("estimate", {}).get("utilization", {})
    bars = [(f"device {n}", d.get("utilization"), est.get(n)) for n, d in rep["devices"].items()]
    bars += [(f"link {n}", d.get("utilization"), None) for n, d in rep.get("links", {}).items()]
    fig, ax = pyplot().subplots(figsize=(8, 0.45 * len(bars) + 1.3))
    y = np.arange(len(bars))
    ax.barh(y, [b[1] or 0.0 for b in bars], height=0.6, color="#4c9be8", label="simulated")
    closed = [(i, b[2]) for i, b in enumerate(bars) if b[2] is not None]
    if closed:
        ax.plot([c[1] for c in closed], [c[0] for c in closed], "D", color="#e8804c", label="closed form")
    ax.set_yticks(y, [b[0] for b in bars], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("utilization (busy time / simulated time)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def _svg(fig, prefix: str, label: str) -> str:
    """A figure as inline SVG; its ids prefixed, so that several on one page never collide."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "specsim", "svg.fonttype": "path"}):
        fig.savefig(buf, format="svg", metadata={k: None for k in ("Date", "Creator", "Format", "Type")})
    pyplot().close(fig)
    text = buf.getvalue()
    text = re.sub(r"<!--.*?-->", "", text[text.index("<svg"):], flags=re.S)  # from <svg on: no DTD, no comments
    text = re.sub(r'(id="|href="#|url\(#)', rf"\g<1>{prefix}-", text)
    label = html.escape(label)
    return "<figure>" + text.replace("<svg ", f'<svg role="img" aria-label="{label}" ', 1) + "</figure>"


# ---------------------------------------------------------------- reading and formatting


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(path, "", f"cannot read file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise InputError(path, "", "not UTF-8 text") from None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(_read(path))
    except json.JSONDecodeError as exc:
        raise InputError(path, "", f"not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise InputError(path, "", "the top level must be an object (what specsim run --out writes)")
    return data


def _read_csv(path: Path, numbers: tuple = (), required: tuple = (), text: tuple = ()) -> list[dict]:
    """The rows; a cell is None where empty, text in the `text` columns, else a number where it reads as
    one. The `numbers` columns must be there and hold numbers, the `required` ones must be there."""
    reader = csv.DictReader(io.StringIO(_read(path)))
    for column in numbers + required:
        if column not in (reader.fieldnames or ()):
            raise InputError(path, column, "required column is missing")
    rows = []
    for line, row in enumerate(reader, 2):
        if None in row or None in row.values():
            raise InputError(path, f"line {line}", "has a different number of cells than the header")
        rows.append({k: v if k in text else _cell(v) for k, v in row.items()})
        for column in numbers:
            if not isinstance(rows[-1][column], (int, float)):
                raise InputError(path, column, f"must be a number (line {line}: {row[column]!r})")
    return rows


def _rows_with_keys(path: Path, after_keys: str, numbers: tuple, required: tuple = ()) -> tuple[list, list]:
    """A sweep's or plan's table and its swept keys (the columns between `config` and `after_keys`, kept
    as written)."""
    header = next(csv.reader(io.StringIO(_read(path))), [])
    if "config" not in header or after_keys not in header[header.index("config"):]:
        raise InputError(path, "config" if "config" not in header else after_keys, "required column is missing")
    keys = header[header.index("config") + 1:header.index(after_keys)]
    return _read_csv(path, numbers, required, text=tuple(keys)), keys


def _name_and_slo(folder: Path):
    """(scenario name, the SLO a plan planned for) from scenario.yaml; (folder name, None) without it."""
    import yaml

    from .scenario import SloSpec

    try:
        data = yaml.safe_load(_read(folder / SCENARIO_FILE))
        name = str(data.get("name", folder.resolve().name))
        return name, SloSpec.model_validate(data["slo"]) if data.get("slo") is not None else None
    except (InputError, yaml.YAMLError, KeyError, TypeError, AttributeError, ValueError):  # none or unreadable
        return folder.resolve().name, None


def _cell(v: str):
    if v == "":
        return None
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def _mean_ci(row: dict, metric: str, scale: float) -> str:
    mean, ci = row.get(f"{metric}.mean"), row.get(f"{metric}.ci95")
    if mean is None:
        return "-"
    return f"{mean * scale:.4g}" + (f" ± {ci * scale:.2g}" if ci and ci > 1e-9 * abs(mean) else "")


def _table(header: tuple, rows: list[tuple]) -> str:
    def cell(c) -> str:
        return f"<td{' class=n' if NUMBER.match(str(c)) else ''}>{html.escape(str(c))}</td>"

    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
