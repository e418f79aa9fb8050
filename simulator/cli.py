"""The `specsim` command line: run, estimate, validate, sweep, plan, models, profiles, schema."""

from __future__ import annotations

import json
import math
import sys
from importlib import resources
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from . import analytic, catalog, engine, metrics, profiles, render
from . import scenario as sc
from .calibration import commands as calibration_commands
from .errors import InputError, check_out_folder, exits_on_input_error
from .interrupts import interruptible
from .progress import _count_progress, _lines, _progress  # noqa: F401 (_lines: tests)
from .usage import Commands

app = typer.Typer(cls=Commands, add_completion=True, no_args_is_help=True, rich_markup_mode=None,
                  help="Predict throughput and latency of speculative decoding by discrete-event simulation.")
out_console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, highlight=False)

SCENARIO_ARG = typer.Argument(None, help="Scenario file (YAML, JSON or TOML); none runs the built-in quickstart.",
                              show_default=False)
SET_OPT = typer.Option([], "--set", help="Override a field: dotted.key=value (repeatable), "
                       "e.g. strategy.gamma=6 or links.0.bandwidth_mbps=5.")
REPORT_OPT = typer.Option(None, "--report", help="Also write one self-contained HTML page of the results "
                          "(figures, charts, scenario), as `specsim report` draws from the output folder.",
                          show_default=False)
JSON_OPT = typer.Option(False, "--json", help="Print one JSON object instead of tables.", metavar="")  # a flag: no <bool>


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"specsim {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, metavar="",
                                       help="Print the version and exit.")) -> None:
    """Predict throughput and latency of speculative decoding by discrete-event simulation."""


def _fail(exc: InputError):
    err_console.print(f"error: {exc}", markup=False, emoji=False, soft_wrap=True)  # one line, verbatim
    raise typer.Exit(2)


def _load(path: Optional[Path], overrides: list[str]) -> tuple[sc.Scenario, str]:
    spec, source, _ = _load_with_data(path, overrides)
    return spec, source


def _load_with_data(path: Optional[Path], overrides: list[str]) -> tuple[sc.Scenario, str, dict]:
    """The scenario, its source, and its data as the run sees it (after --set), for scenario.yaml."""
    import copy

    import yaml

    data = sc.read_data(path) if path is not None else \
        yaml.safe_load(resources.files("simulator").joinpath("quickstart.yaml").read_text())
    for assignment in overrides:
        sc.apply_override(data, assignment)
    if path is None:
        return sc.parse(data, "quickstart"), "quickstart", data
    return sc.parse(copy.deepcopy(data), path, path.parent), str(path), data


@app.command()
@interruptible
def run(scenario: Optional[Path] = SCENARIO_ARG, set_: list[str] = SET_OPT, as_json: bool = JSON_OPT,
        out: Optional[Path] = typer.Option(None, "--out", help="Also write report.json, requests.csv, "
                                           "steps.csv and scenario.yaml (batches.csv for batched, jobs.csv with "
                                           "--timeline or --report) into this folder, all of them or none "
                                           "(README: output folders)."),
        timeline: Optional[Path] = typer.Option(None, "--timeline", help="Draw what each device and link did "
                                                "when, as a PNG (the start of the run)."),
        timeline_ms: Optional[float] = typer.Option(None, "--timeline-ms", help="Span of the timeline, in "
                                                    "simulated ms (default: the first 60 jobs)."),
        trace: Optional[Path] = typer.Option(None, "--trace", help="Write every job of the run as a Chrome "
                                             "trace-event JSON file (opens in Perfetto or chrome://tracing)."),
        report: Optional[Path] = REPORT_OPT):
    """Simulate a scenario and report throughput, latency and utilization."""
    try:
        _check_run_outputs(out, timeline, timeline_ms, trace, report)
        spec, source, data = _load_with_data(scenario, set_)
        # the world is built once, for the run and the closed form; records are kept only to be written
        setup = engine.prepare(spec, source, keep_records=any(x is not None for x in (out, report, timeline, trace)))
        with _progress() as progress:
            result = engine.simulate(spec, source, progress=progress, setup=setup,
                                     record_jobs=timeline is not None or trace is not None or report is not None)
        estimate = analytic.estimate(spec, source, setup)  # after the run: its lookups add no warnings to it
    except InputError as exc:
        _fail(exc)
    _draw_jobs(result, f"{spec.name}: {render.describe(spec)}", timeline, timeline_ms, trace)
    rep = metrics.report(result, spec.name, spec.strategy.kind)
    rep["estimate"] = estimate
    try:
        written = _write_run(out, report, rep, result, data)
    except InputError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(rep, indent=2, default=metrics._json_default))
    else:
        render.print_report(rep, spec, out_console)
        if out is not None:
            files = [p.name for p in written if p.parent == out and p != report]
            out_console.print(f"wrote {out}/" + ", ".join(files))
        if report is not None:
            out_console.print(f"wrote {report}", markup=False)


def _check_run_outputs(out, timeline, timeline_ms, trace, report) -> None:
    """run's output options, refused before anything runs."""
    if out is not None and out.exists() and not out.is_dir():
        raise InputError(out, "", "--out must be a folder")
    if timeline is not None and (timeline.suffix != ".png" or not timeline.parent.is_dir() or timeline.is_dir()):
        raise InputError(timeline, "", "--timeline must be a .png file in an existing folder")
    if timeline_ms is not None and not 0 < timeline_ms < math.inf:
        raise InputError("--timeline-ms", "timeline_ms", f"must be a finite number of ms > 0, not {timeline_ms}")
    if trace is not None and (trace.suffix != ".json" or not trace.parent.is_dir() or trace.is_dir()):
        raise InputError(trace, "", "--trace must be a .json file in an existing folder")
    _check_report(report, out)


def _draw_jobs(result, title: str, timeline, timeline_ms, trace) -> None:
    """The run's jobs as --timeline's PNG and --trace's Chrome trace, where asked for."""
    if timeline is not None:
        from . import timeline as tl

        until = None if timeline_ms is None else timeline_ms / 1000
        try:
            tl.draw(result.jobs, timeline, title, until, result.batches)
        except OSError as exc:
            _fail(InputError(timeline, "", f"cannot write the timeline ({exc.strerror or exc})"))
    if trace is not None:
        from . import trace as tr

        try:
            tr.write(result.jobs, result.batches, title, trace)
        except OSError as exc:
            _fail(InputError(trace, "", f"cannot write the trace ({exc.strerror or exc})"))


def _write_run(out: Optional[Path], report: Optional[Path], rep: dict, result, data: dict) -> list[Path]:
    """--out's files and the --report page drawn from them (in a temporary folder without --out)."""
    import tempfile

    if out is None and report is None:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        if out is not None:
            folder = out
            written = _write_or_fail(out, metrics.OUTPUTS, lambda into: metrics.write_outputs(into, rep, result, data))
        else:
            folder = Path(tmp)
            written = metrics.write_outputs(folder, rep, result, data)
        if report is not None:
            from . import html_report

            written.append(html_report.write(folder, report))
    return written


def _check_report(report: Optional[Path], out: Optional[Path]) -> None:
    if report is not None:
        from . import html_report

        html_report.check_target(report, "--report", out)


@app.command()
def estimate(scenario: Optional[Path] = SCENARIO_ARG, set_: list[str] = SET_OPT, as_json: bool = JSON_OPT):
    """Closed-form prediction (Leviathan et al., operational laws) without simulating."""
    try:
        spec, source = _load(scenario, set_)
        est = analytic.estimate(spec, source)
    except InputError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(est, indent=2))
        return
    table = Table(title=f"{spec.name}: closed-form estimate ({render.describe(spec)})", show_header=False)
    for key, value in est.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {render.fmt(v)}" for k, v in value.items())
        table.add_row(key.replace("_", " "), render.fmt(value))
    out_console.print(table)


@app.command()
def validate(scenario: Path = typer.Argument(..., help="Scenario file to check."), set_: list[str] = SET_OPT):
    """Check a scenario (schema, references, profiles) without running it."""
    try:
        spec, source = _load(scenario, set_)
        engine.prepare(spec, source)  # opens every profile and trace the run would use
    except InputError as exc:
        _fail(exc)
    out_console.print(f"ok: {source} ({spec.name}, {render.describe(spec)})")


@app.command()
def models(as_json: bool = JSON_OPT):
    """List the model presets."""
    rows = {name: {"layers": a.layers, "hidden": a.hidden, "heads": a.heads, "kv_heads": a.kv_heads, "ffn": a.ffn,
                   "vocab": a.vocab, "params": a.params(), "weight_bytes": a.weight_bytes(),
                   "kv_bytes_per_token": a.kv_bytes_per_token()} for name, a in catalog.PRESETS.items()}
    if as_json:
        out_console.print_json(json.dumps(rows))
        return
    table = Table(title="model presets")
    for col in ("name", "layers", "hidden", "heads", "kv heads", "ffn", "vocab", "params", "weights (bf16)",
                "KV per token"):
        table.add_column(col, justify="left" if col == "name" else "right", no_wrap=col == "name")
    for name, r in rows.items():
        table.add_row(name, *(str(r[k]) for k in ("layers", "hidden", "heads", "kv_heads", "ffn", "vocab")),
                      f"{r['params'] / 1e9:.2f} B", f"{r['weight_bytes'] / 1e9:.2f} GB",
                      f"{r['kv_bytes_per_token'] / 1024:.0f} KiB")
    out_console.print(table)


@app.command("profiles")
def list_profiles(as_json: bool = JSON_OPT):
    """List the hardware profiles with their provenance."""
    rows = {}
    try:
        for name, folder in profiles.available().items():
            meta = profiles.read_meta(folder)
            csvs = profiles.grid_folder(folder, meta)
            rows[name] = {"provenance": meta.provenance, "execution": meta.execution, "device": meta.device,
                          "dtype": meta.dtype, "memory_gb": meta.memory_gb, "folder": str(folder),
                          "models": sorted(p.stem for p in csvs.glob("*.csv")), "method": meta.method}
    except InputError as exc:
        _fail(exc)
    if as_json:
        out_console.print_json(json.dumps(rows))
        return
    table = Table(title="hardware profiles")
    for col in ("name", "provenance", "execution", "device", "dtype", "memory", "models", "how"):
        table.add_column(col, no_wrap=col == "name")  # the names are what one types: never cut
    for name, r in rows.items():
        table.add_row(name, r["provenance"], r["execution"] or "-", r["device"], r["dtype"], f"{r['memory_gb']:g} GB",
                      ", ".join(r["models"]) or "any (roofline)", r["method"])
    out_console.print(table)


@app.command()
def schema(as_json: bool = typer.Option(False, "--json", help="Print the JSON schema of a scenario instead.", metavar="")):
    """Print every scenario and profile.yaml field with its type, default, rule and unit, as Markdown."""
    from . import reference
    sys.stdout.write(json.dumps(reference.json_schema(), indent=2) + "\n" if as_json else reference.render())


WORKERS_OPT = typer.Option(None, "--workers", help="Processes on this machine (default: every core; 1 runs "
                           "everything in this process); with --cluster local, its worker processes.",
                           show_default=False)
CLUSTER_OPT = typer.Option(None, "--cluster", help="Run on dask.distributed instead: a scheduler ADDRESS "
                           "(tcp://host:8786) or 'local' to start a LocalCluster here (the 'cluster' extra).",
                           show_default=False)


@app.command()
@interruptible
def sweep(scenario: Path = typer.Argument(..., help="Scenario file (YAML, JSON or TOML)."),
          grids: list[str] = typer.Option([], "--grid", help="A swept key and its values: dotted.key=v1,v2,... "
                                          "(repeatable; values read as YAML like --set, split at commas outside "
                                          "brackets, braces and quotes), e.g. strategy.gamma=2,4,8."),
          set_: list[str] = SET_OPT,
          repeats: int = typer.Option(1, "--repeats", help="Runs per configuration; repeat r uses seed = the "
                                      "configuration's seed + r."),
          out: Path = typer.Option(Path("sweep-out"), "--out", help="Folder for runs.csv, summary.csv and "
                                   "plot-KEY.png, written all together or not at all (README: output folders)."),
          workers: Optional[int] = WORKERS_OPT, cluster: Optional[str] = CLUSTER_OPT, as_json: bool = JSON_OPT,
          report: Optional[Path] = REPORT_OPT):
    """Run every configuration of the grids' cross product REPEATS times: runs.csv (one row per run, every
    figure of the report as a dotted column), summary.csv (mean and 95% Student-t interval over the
    repeats) and, per swept key, a plot of throughput and p99 latencies. Every configuration is checked
    before anything runs."""
    from . import parallel
    from . import sweep as sw

    try:
        check_out_folder(out)
        _check_report(report, out)
        parallel.check_backend(workers, cluster)
        plan_ = sw.prepare(scenario, grids, set_, repeats)
        with _count_progress(len(plan_.runs), "runs") as tick:
            results = parallel.run_all(sw.run_one, plan_.runs, workers, cluster, tick)
        written = _write_or_fail(out, sw.OUTPUTS, lambda folder: sw.write(folder, plan_, results)) + _report_of(out, report)
    except InputError as exc:
        _fail(exc)
    summ = sw.summary(plan_, sw.rows(plan_, results))
    if as_json:
        print(json.dumps({"scenario": str(scenario), "repeats": repeats, "configurations": summ,
                          "written": [str(p) for p in written]}, indent=2, default=metrics._json_default))
        return
    render.print_sweep(f"{scenario}: {len(plan_.configs)} configuration(s) x {repeats} repeat(s)",
                       [a.key for a in plan_.axes], summ, out_console)
    out_console.print(f"wrote {', '.join(str(p) for p in written)}", markup=False)


@app.command()
@interruptible
def plan(scenario: Path = typer.Argument(..., help="Scenario file (YAML, JSON or TOML)."),
         slo_ttft_ms: Optional[float] = typer.Option(None, "--slo-ttft-ms", help="TTFT target, in ms (default: "
                                                     "the scenario's slo.ttft_ms).", show_default=False),
         slo_tpot_ms: Optional[float] = typer.Option(None, "--slo-tpot-ms", help="TPOT target, in ms (default: "
                                                     "the scenario's slo.tpot_ms).", show_default=False),
         percentile: Optional[float] = typer.Option(None, "--percentile", help="Percentile of TTFT and TPOT that "
                                                    "must be within target, in percent (default: the scenario's, "
                                                    "else 99).", show_default=False),
         search: list[str] = typer.Option([], "--search", help="A searched key and its values: "
                                          "dotted.key=v1,v2,... (repeatable, as sweep's --grid)."),
         set_: list[str] = SET_OPT,
         tolerance: float = typer.Option(0.02, "--tolerance", help="Relative width at which the bisection of "
                                         "the rate stops."),
         out: Path = typer.Option(Path("plan-out"), "--out", help="Folder for plan.csv and plan.png, written "
                                  "together or not at all (README: output folders)."),
         workers: Optional[int] = WORKERS_OPT, cluster: Optional[str] = CLUSTER_OPT, as_json: bool = JSON_OPT,
         report: Optional[Path] = REPORT_OPT):
    """Capacity planning: for each configuration of the --search cross product, the highest Poisson
    arrival rate whose percentile TTFT and TPOT stay within the SLO, found by doubling or halving from
    the closed-form single-stream rate, then bisecting to --tolerance; the answer is a simulated rate
    that passed, or 0 (infeasible) when even 1/1024 of the start rate fails. Stopping rule: each trial
    measures max(workload.requests, ceil(20 / (1 - percentile / 100))) requests, so at least 20 lie
    beyond the percentile, after 10% more warm-up requests that are simulated but not measured; all
    trials use the scenario's seed. Ranks configurations by sustained rate, tokens per USD (devices
    with cost_per_hour) and percentile end-to-end latency; writes plan.csv and plan.png."""
    from . import parallel
    from . import plan as pl

    try:
        check_out_folder(out)
        _check_report(report, out)
        parallel.check_backend(workers, cluster)
        job = pl.prepare(scenario, search, set_, slo_ttft_ms, slo_tpot_ms, percentile, tolerance)
        with _count_progress(None, "plan trials") as tick:  # trials per configuration vary: no total
            found = pl.run(job.searches, workers, cluster, notes=tick)
        ranked = pl.rank(job, found)
        written = _write_or_fail(out, pl.OUTPUTS, lambda folder: pl.write(folder, job, ranked)) + _report_of(out, report)
    except InputError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps({"scenario": str(scenario), "slo": job.slo.model_dump(), "configurations": ranked,
                          "written": [str(p) for p in written]}, indent=2, default=metrics._json_default))
        return
    render.print_plan(job, ranked, out_console)
    out_console.print(f"wrote {', '.join(str(p) for p in written)}", markup=False)


def _report_of(folder: Path, report: Optional[Path]) -> list[Path]:
    if report is None:
        return []
    from . import html_report

    return [html_report.write(folder, report)]


@app.command("report")
@exits_on_input_error
def report_command(folder: Path = typer.Argument(..., help="A folder written by run, sweep or plan with --out."),
                   out: Optional[Path] = typer.Option(None, "--out", help="The HTML file (default: "
                                                      "FOLDER/report.html).", show_default=False)):
    """One self-contained HTML page of a run, sweep or plan output folder: the scenario, the headline
    figures beside the closed form, latency CDFs, utilization and the timeline (run), the curves and the
    ranking (sweep, plan). Charts are inline SVG; the page needs no network."""
    from . import html_report

    html_report.kind(folder)  # not an output folder: the error names it
    if out is not None:
        html_report.check_target(out, "--out")
    out_console.print(f"wrote {html_report.write(folder, out or folder / 'report.html')}", markup=False)


app.command("profile")(calibration_commands.profile)
app.add_typer(calibration_commands.calibrate_app, name="calibrate")


def _write_or_fail(out: Path, known: tuple[str, ...], write):
    """All of a command's output files into `out` as one unit (outputs.py), or none of them."""
    from . import outputs

    try:
        return outputs.write(out, known, write)
    except OSError as exc:
        raise InputError(out, "", f"cannot write outputs ({exc.strerror or exc})") from None


def main():  # pragma: no cover
    app()
