"""The `specsim` command line: run, estimate, validate, models, profiles, schema."""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from . import analytic, catalog, engine, metrics, profiles
from . import scenario as sc
from .calibration import commands as calibration_commands
from .errors import InputError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Predict throughput and latency of speculative decoding by discrete-event simulation.")
out_console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, highlight=False)

SCENARIO_ARG = typer.Argument(None, help="Scenario file (YAML, JSON or TOML); none runs the built-in quickstart.",
                              show_default=False)
SET_OPT = typer.Option([], "--set", help="Override a field: dotted.key=value (repeatable), "
                       "e.g. strategy.gamma=6 or links.0.bandwidth_mbps=5.")
JSON_OPT = typer.Option(False, "--json", help="Print one JSON object instead of tables.")


def _fail(exc: InputError):
    err_console.print(f"error: {exc}", markup=False, emoji=False, soft_wrap=True)  # one line, verbatim
    raise typer.Exit(2)


def _load(path: Optional[Path], overrides: list[str]) -> tuple[sc.Scenario, str]:
    if path is None:
        text = resources.files("simulator").joinpath("quickstart.yaml").read_text()
        import yaml
        data = yaml.safe_load(text)
        for assignment in overrides:
            sc.apply_override(data, assignment)
        return sc.parse(data, "quickstart"), "quickstart"
    return sc.load(path, overrides), str(path)


@app.command()
def run(scenario: Optional[Path] = SCENARIO_ARG, set_: list[str] = SET_OPT, as_json: bool = JSON_OPT,
        out: Optional[Path] = typer.Option(None, "--out", help="Also write report.json, requests.csv and "
                                           "steps.csv into this folder."),
        timeline: Optional[Path] = typer.Option(None, "--timeline", help="Draw what each device and link did "
                                                "when, as a PNG (the start of the run)."),
        timeline_ms: Optional[float] = typer.Option(None, "--timeline-ms", help="Span of the timeline, in "
                                                    "simulated ms (default: 5% of the run).")):
    """Simulate a scenario and report throughput, latency and utilization."""
    try:
        if out is not None and out.exists() and not out.is_dir():
            raise InputError(out, "", "--out must be a folder")
        if timeline is not None and (timeline.suffix != ".png" or not timeline.parent.is_dir()):
            raise InputError(timeline, "", "--timeline must be a .png file in an existing folder")
        spec, source = _load(scenario, set_)
        estimate = analytic.estimate(spec, source)
        with _progress() as progress:
            result = engine.simulate(spec, source, progress=progress, record_jobs=timeline is not None)
    except InputError as exc:
        _fail(exc)
    if timeline is not None:
        from . import timeline as tl

        until = None if timeline_ms is None else timeline_ms / 1000
        tl.draw(result.jobs, timeline, f"{spec.name}: {_describe(spec)}", until)
    rep = metrics.report(result, spec.name, spec.strategy.kind)
    rep["estimate"] = estimate
    if out is not None:
        try:
            metrics.write_outputs(out, rep, result)
        except OSError as exc:
            _fail(InputError(out, "", f"cannot write outputs ({exc.strerror or exc})"))
    if as_json:
        print(json.dumps(rep, indent=2, default=metrics._json_default))
    else:
        _print_report(rep, spec)
        if out is not None:
            out_console.print(f"wrote {out}/report.json, requests.csv, steps.csv")


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
    table = Table(title=f"{spec.name}: closed-form estimate ({_describe(spec)})", show_header=False)
    for key, value in est.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
        table.add_row(key.replace("_", " "), _fmt(value))
    out_console.print(table)


@app.command()
def validate(scenario: Path = typer.Argument(..., help="Scenario file to check."), set_: list[str] = SET_OPT):
    """Check a scenario (schema, references, profiles) without running it."""
    try:
        spec, source = _load(scenario, set_)
        analytic.estimate(spec, source)  # opens every profile and trace the run would use
    except InputError as exc:
        _fail(exc)
    out_console.print(f"ok: {source} ({spec.name}, {_describe(spec)})")


@app.command()
def models():
    """List the model presets."""
    table = Table(title="model presets")
    for col in ("name", "layers", "hidden", "heads", "kv heads", "ffn", "vocab", "params", "weights (bf16)",
                "KV per token"):
        table.add_column(col, justify="left" if col == "name" else "right")
    for name, a in catalog.PRESETS.items():
        table.add_row(name, str(a.layers), str(a.hidden), str(a.heads), str(a.kv_heads), str(a.ffn), str(a.vocab),
                      f"{a.params() / 1e9:.2f} B", f"{a.weight_bytes() / 1e9:.2f} GB",
                      f"{a.kv_bytes_per_token() / 1024:.0f} KiB")
    out_console.print(table)


@app.command("profiles")
def list_profiles():
    """List the hardware profiles with their provenance."""
    table = Table(title="hardware profiles")
    for col in ("name", "provenance", "device", "dtype", "memory", "models", "how"):
        table.add_column(col)
    try:
        for name, folder in profiles.available().items():
            meta = profiles.read_meta(folder)
            measured = ", ".join(sorted(p.stem for p in folder.glob("*.csv"))) or "any (roofline)"
            table.add_row(name, meta.provenance, meta.device, meta.dtype, f"{meta.memory_gb:g} GB", measured,
                          meta.method)
    except InputError as exc:
        _fail(exc)
    out_console.print(table)


@app.command()
def schema(as_json: bool = typer.Option(False, "--json", help="Print the JSON schema of a scenario instead.")):
    """Print every scenario and profile.yaml field with its type, default, rule and unit, as Markdown."""
    from . import reference
    sys.stdout.write(json.dumps(reference.json_schema(), indent=2) + "\n" if as_json else reference.render())


app.command("profile")(calibration_commands.profile)
app.add_typer(calibration_commands.calibrate_app, name="calibrate")


# ---------------------------------------------------------------- rendering


def _describe(spec: sc.Scenario) -> str:
    s = spec.strategy
    if isinstance(s, sc.Speculative):
        return f"speculative, gamma {s.gamma}: {s.draft.model} on {s.draft.device}, {s.target.model} on {s.target.device}"
    if isinstance(s, sc.Autoregressive):
        return f"autoregressive: {s.target.model} on {s.target.device}"
    if isinstance(s, sc.SharedVerifier):
        return (f"shared verifier, gamma {s.gamma}: {s.draft_model} on {len(s.edges)} edge device(s), "
                f"{s.target.model} on {s.target.device} in {s.policy} batches of up to {s.max_batch}")
    places = ", ".join(f"{p.model} on {p.device}" for p in s.placements().values())
    return f"{s.kind}" + (f", gamma {s.gamma}" if hasattr(s, "gamma") else "") + f": {places}"


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _ms(v) -> str:
    return "-" if v is None else f"{v * 1000:.2f}"


def _print_report(rep: dict, spec: sc.Scenario) -> None:
    est = rep["estimate"]
    table = Table(title=f"{rep['scenario']}: {_describe(spec)}")
    table.add_column("")
    table.add_column("simulated", justify="right")
    table.add_column("closed form", justify="right")
    table.add_row("throughput (tokens/s)", _fmt(rep["throughput_tokens_per_s"]), _fmt(est["throughput_tokens_per_s"]))
    table.add_row("tokens per step", _fmt(rep["tokens_per_step"]), _fmt(est["tokens_per_step"]))
    table.add_row("draft acceptance rate", _fmt(rep["acceptance_rate"]), "")
    for key in ("ttft", "tpot", "e2e"):
        s = rep["latency_s"][key]
        table.add_row(f"{key.upper()} mean / p50 / p99 (ms)", f"{_ms(s['mean'])} / {_ms(s['p50'])} / {_ms(s['p99'])}",
                      _ms(est["latency_s"][key]))
    for name, d in rep["devices"].items():
        table.add_row(f"device {name} utilization", _fmt(d["utilization"]), _fmt(est["utilization"].get(name)))
    for name, link in rep["links"].items():
        table.add_row(f"link {name} utilization / MB", f"{_fmt(link['utilization'])} / {link['bytes'] / 1e6:.3f}", "")
    table.add_row("requests / simulated s", f"{rep['requests']} / {_fmt(rep['simulated_s'])}", "")
    out_console.print(table)
    events = rep["sim"]["events"]
    out_console.print(f"simulated {rep['output_tokens']} tokens in {rep['sim']['wall_s']:.2f} s wall"
                      + (f", {events} events" if events is not None else ""))
    for w in rep["warnings"]:
        out_console.print(f"warning: {w}", markup=False)


class _progress:
    """A progress bar on a terminal's stderr for runs of many requests; silent otherwise."""

    def __enter__(self):
        self._bar = None
        if not sys.stderr.isatty():
            return None
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
        self._bar = Progress(TextColumn("simulating"), BarColumn(), TextColumn("{task.completed}/{task.total} requests"),
                             TimeRemainingColumn(), console=err_console, transient=True)
        self._bar.start()
        self._task = self._bar.add_task("run", total=None)
        return self._update

    def _update(self, done: int, total: int | None) -> None:
        self._bar.update(self._task, completed=done, total=total)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()
        return False


def main():  # pragma: no cover
    app()
