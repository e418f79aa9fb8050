"""`specsim profile` and `specsim calibrate run|compare|fit`."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import InputError, check_out_folder, exits_on_input_error
from ..interrupts import interruptible
from ..profiles import Overheads
from ..tables import write_csv

calibrate_app = typer.Typer(no_args_is_help=True, help="Check the simulator against real runs and fit overheads.")


def _csv(text: str, cast=str, option: str = "") -> list:
    try:
        return [cast(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(option or "option", option.lstrip("-") or "value",
                         f"{text!r}: comma-separated {'integers' if cast is int else 'numbers'}") from None


def _overheads(o: Overheads) -> str:
    return (f"target forward {o.forward_ms:.4f} ms, draft forward {o.draft_forward_ms:.4f} ms, draft call "
            f"{o.draft_call_ms:.4f} ms, step {o.step_ms:.4f} ms, message {o.message_ms:.4f} ms")


def _need_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        raise InputError("torch", "", "measuring needs PyTorch: pip install -e '.[torch]'") from None


def _check_mode(mode: str | None, device: str) -> None:
    if mode not in (None, "graph", "eager"):
        raise InputError("--mode", "mode", f"must be graph or eager, not {mode!r}")
    if mode == "graph" and not device.startswith("cuda"):
        raise InputError("--mode", "mode", "graph mode needs --device cuda (a CPU runs eager forward passes)")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InputError("--device", "device", f"{device} is not available to this PyTorch "
                             f"({torch.__version__}; a CPU build has no CUDA): use --device cpu")


def _check_engine(engine: str, mode: str | None) -> None:
    if engine not in ("specsim", "hf"):
        raise InputError("--engine", "engine", f"must be specsim or hf, not {engine!r}")
    if engine == "hf":
        if mode == "graph":
            raise InputError("--mode", "mode", "the hf engine runs eagerly (its assisted generation has no graphs)")
        try:
            import transformers  # noqa: F401
        except ImportError:
            raise InputError("--engine", "engine", "hf needs transformers: pip install -e '.[torch]'") from None


def _progress(total: int, label: str):
    """A callable that advances a rich progress bar on stderr (a terminal only), and its closer."""
    import sys

    if not sys.stderr.isatty():
        return (lambda: None), (lambda: None)
    from rich.progress import Progress

    bar = Progress(transient=True)
    task = bar.add_task(label, total=total)
    bar.start()
    return (lambda: bar.advance(task)), bar.stop


@interruptible
@exits_on_input_error
def profile(device: str = typer.Option("cpu", help="cpu or cuda (or cuda:N)."),
            models: str = typer.Option("llama-68m,llama-160m", help="Comma-separated model presets; <preset>.tp<N> measures one GPU's share of an N-way tensor-parallel model (no all-reduce)."),
            out: Path = typer.Option(..., help="Profile folder to write, e.g. hardware_profiles/my-box."),
            threads: Optional[int] = typer.Option(None, help="CPU threads (default: PyTorch's)."),
            batches: Optional[str] = typer.Option(None, help="Batch sizes, comma-separated (default per device)."),
            queries: Optional[str] = typer.Option(None, help="Query token counts, comma-separated."),
            contexts: Optional[str] = typer.Option(None, help="Context token counts, comma-separated."),
            min_samples: int = typer.Option(5, help="Timed passes per grid point, at least."),
            min_s: float = typer.Option(0.05, help="Timed seconds per grid point, at least."),
            mode: Optional[str] = typer.Option(None, help="graph (CUDA-graph replay, as serving engines decode; "
                                               "the default on CUDA) or eager (the only mode on a CPU)."),
            passes: int = typer.Option(2, min=1, help="Passes over the grid, each in its own shuffled order; "
                                       "the profile reports how far they disagree."),
            engine: str = typer.Option("specsim", help="specsim (this package's Llama) or hf (Hugging Face "
                                       "transformers' LlamaForCausalLM, eager).")):
    """Measure a latency profile (batch x query tokens x context tokens) with real PyTorch forward passes."""
    from .. import catalog

    _need_torch()
    from . import measure

    for m in _csv(models):  # a preset, or one GPU's tensor-parallel shard of it: <preset>.tp<N>
        try:
            catalog.named(m)
        except KeyError:
            raise InputError("--models", "models", f"unknown preset {m!r} (known: {', '.join(catalog.PRESETS)}; "
                             "a tensor-parallel shard: <preset>.tp<N>)") from None
        except ValueError as exc:
            raise InputError("--models", "models", str(exc)) from None
    _check_mode(mode, device)
    _check_engine(engine, mode)
    grid = dict(measure.GPU_GRID if device.startswith("cuda") else measure.CPU_GRID)
    for key, value in (("batches", batches), ("queries", queries), ("contexts", contexts)):
        if value:
            grid[key] = _csv(value, int, f"--{key}")
    measure.measure_profile(_csv(models), out, device=device, threads=threads, grid=grid,
                            min_samples=min_samples, min_s=min_s, mode=mode, passes=passes, engine=engine,
                            log=typer.echo)
    typer.echo(f"wrote {out}/profile.yaml and {len(_csv(models))} grid CSV(s)")


@calibrate_app.command("run")
@interruptible
@exits_on_input_error
def run(profile: str = typer.Option(..., help="Profile to predict with (measure it first with `specsim profile`)."),
        out: Path = typer.Option(..., help="Folder for runs.jsonl, report.md and scatter.png."),
        device: str = typer.Option("cpu", help="Where the runs execute: cpu or cuda."),
        targets: str = typer.Option("llama-160m", help="Target presets, comma-separated."),
        drafts: str = typer.Option("llama-68m", help="Draft presets, comma-separated."),
        gammas: str = typer.Option("1,2,4", help="Draft lengths, comma-separated."),
        alphas: str = typer.Option("0.5,0.9", help="Oracle acceptance probabilities, comma-separated."),
        greedy: bool = typer.Option(True, help="Also run greedy (real token agreement) speculative decoding.", metavar=""),
        prompt: int = typer.Option(64, help="Prompt tokens per run."),
        output: int = typer.Option(48, help="Output tokens per run."),
        repeats: int = typer.Option(3, help="Timed rounds over every configuration (after one warm-up round)."),
        threads: Optional[int] = typer.Option(None, help="CPU threads."),
        mode: Optional[str] = typer.Option(None, help="graph (CUDA-graph replay; the default on CUDA) or eager."),
        engine: str = typer.Option("specsim", help="specsim (this package's decoding loop) or hf (Hugging Face "
                                   "transformers' assisted generation; oracle acceptance only)."),
        host_speed: bool = typer.Option(False, "--host-speed", help="Time a host probe right before and after "
                                        "every run (eager runs) and compare with --host-speed.", metavar="")):
    """Time a matrix of real autoregressive and speculative runs, then compare with the simulator."""
    _need_torch()
    _check_mode(mode, device)
    _check_engine(engine, mode)
    import torch

    from . import measure

    if host_speed and engine == "specsim" and (mode or measure.default_mode(torch.device(device))) != "eager":
        raise InputError("--host-speed", "mode", "host probes time eager forwards: add --mode eager (a replayed graph does "
                         "not wait on the host)")

    base = {"prompt_tokens": prompt, "output_tokens": output, "target_profile": profile, "draft_profile": profile}
    configs = [base | {"target": t, "mode": "autoregressive", "gamma": 0} for t in _csv(targets)]
    modes = [("oracle", a) for a in _csv(alphas, float, "--alphas")] + ([("greedy", None)] if greedy else [])
    for t, d, g, (m, a) in itertools.product(_csv(targets), _csv(drafts), _csv(gammas, int, "--gammas"), modes):
        configs.append(base | {"target": t, "draft": d, "gamma": g, "mode": m, "alpha": a})
    out.mkdir(parents=True, exist_ok=True)
    path = out / "runs.jsonl"
    path.unlink(missing_ok=True)
    if engine == "hf":
        from . import hf

        hf.measure_runs([c for c in configs if c.get("mode") != "greedy"], path, device=device, repeats=repeats,
                        log=typer.echo, probes=host_speed)
    else:
        measure.measure_runs(configs, path, device=device, threads=threads, repeats=repeats, mode=mode,
                             log=typer.echo, probes=host_speed)
    compare(files=[path], out=out, profile=None, raw=False, host_speed=host_speed)


@calibrate_app.command()
@exits_on_input_error
def compare(files: list[Path] = typer.Argument(..., help="Measurement files (JSON lines; docs/calibration.md)."),
            out: Optional[Path] = typer.Option(None, help="Folder for report.md and scatter.png."),
            profile: Optional[str] = typer.Option(None, help="Predict with this profile instead of the runs' own."),
            raw: bool = typer.Option(False, "--raw", help="Ignore the profiles' fitted overheads (before a fit).", metavar=""),
            host_speed: bool = typer.Option(False, "--host-speed", help="Scale each run to the host speed its "
                                        "profile was measured at, by the run's host probe (runs measured with probes: "
                                        "docs/calibration.md).", metavar="")):
    """Simulate measured runs (from specsim or any engine) and report the prediction error per run."""
    from rich.console import Console
    from rich.table import Table

    from . import compare as cmp
    from . import report

    from . import streams

    check_out_folder(out)
    served = streams.load(files)
    runs = cmp.load_runs(files, allow_none=bool(served))
    if profile:
        runs = [r.model_copy(update={"target_profile": profile, "draft_profile": profile}) for r in runs]
        served = [s.model_copy(update={"target_profile": profile}) for s in served]
    if host_speed:
        runs = [cmp.at_profile_speed(r) for r in runs]
        _host_line(runs)
    if served:
        _compare_streams(served, out)
    if not runs:
        return
    tick, done = _progress(len(runs), "simulating runs")
    preds = []
    for r in runs:
        zero = {name: Overheads() for name in (r.target_profile, r.draft_profile) if name} if raw else None
        preds.append(cmp.predict(r, zero))
        tick()
    done()
    table = Table(title="measured vs predicted")
    for col in report.HEADER:
        table.add_column(col)
    for row in report.rows(preds):
        table.add_row(*row)
    console = Console(width=160)
    console.print(table)
    console.print(report.summary_line(preds), soft_wrap=True)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text(report.markdown("Calibration: measured vs predicted", {"all runs": preds},
                                                       [f"Measurements: {', '.join(map(str, files))}"]))
        report.scatter({"all runs": preds}, out / "scatter.png", "specsim prediction vs real runs")
        (out / "summary.json").write_text(json.dumps(cmp.summarize(preds), indent=2))
        write_csv(out / "runs.csv", report.run_rows(preds))
        console.print(f"wrote {out}/report.md, scatter.png, summary.json, runs.csv")


def _host_line(runs) -> None:
    """How far the host's speed moved over the runs (--host-speed)."""
    import numpy as np

    h = [r.host_factor for r in runs]
    typer.echo(f"host factor (probe over profile) over {len(h)} runs: median {np.median(h):.3f}, "
               f"p10-p90 {np.percentile(h, 10):.3f}-{np.percentile(h, 90):.3f}; runs scaled by it")


def _compare_streams(served, out: Path | None) -> None:
    """Serving streams against the batched strategy: a table and, with --out, serving.json."""
    from rich.console import Console
    from rich.table import Table

    from . import streams

    preds = [streams.predict(s) for s in served]
    table = Table(title="serving streams: measured vs predicted")
    for col in ("target", "draft", "gamma", "alpha", "rate/s", "tokens/s", "pred", "TPOT ms", "pred", "TTFT ms", "pred"):
        table.add_column(col)
    for p in preds:
        s, m, q = p.stream, p.measured, p.predicted
        table.add_row(s.target, s.draft or "-", str(s.gamma), f"{s.alpha:g}", f"{s.model_extra.get('rate_per_s', 0):g}",
                      f"{m['tokens_per_s']:.0f}", f"{q['tokens_per_s']:.0f}", f"{1000 * m['tpot_s']:.2f}",
                      f"{1000 * q['tpot_s']:.2f}", f"{1000 * m['ttft_s']:.0f}", f"{1000 * q['ttft_s']:.0f}")
    console = Console(width=160)
    console.print(table)
    console.print(streams.summary_line(preds), soft_wrap=True)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "serving.json").write_text(json.dumps(streams.summarize(preds), indent=2))


@calibrate_app.command()
@exits_on_input_error
def fit(files: list[Path] = typer.Argument(..., help="Measurement files (JSON lines)."),
        profile: str = typer.Option(..., help="Profile whose overheads to fit (runs with both models on it), or "
                                    "the target's, with --draft-profile."),
        draft_profile: Optional[str] = typer.Option(None, help="For runs with the draft on another device: its "
                                                    "profile, whose draft overheads are fitted (the target's kept)."),
        out: Optional[Path] = typer.Option(None, help="Folder for report.md and scatter.png (serving.json for streams)."),
        train_every: Optional[int] = typer.Option(None, min=2, help="Train on every autoregressive configuration "
                                                  "and every K-th speculative one (default: every other "
                                                  "configuration); runs only.", metavar="K"),
        write: bool = typer.Option(False, "--write", help="Store the fitted overheads in the profile's profile.yaml "
                                   "(shipped profiles too); without it, nothing is written there.", metavar=""),
        host_speed: bool = typer.Option(False, "--host-speed", help="Scale each run to the host speed its "
                                        "profile was measured at, by the run's host probe (runs measured with probes: "
                                        "docs/calibration.md).", metavar="")):
    """Fit per-forward and per-step overheads on a training split; report held-out error before and after.
    Serving streams (`kind: serving`) fit the profile's step overhead for a serving loop."""
    from rich.console import Console

    from . import compare as cmp
    from . import fit as fitting
    from . import report, streams

    check_out_folder(out)
    console = Console(width=160)
    served = streams.load(files)
    if served:
        tick, done = _progress(None, "fitting streams")
        result = fitting.fit_streams(served, profile, progress=tick)
        done()
        held = result.after["held_out"]
        note = (f"specsim calibrate fit on {', '.join(p.name for p in files)}: {len(result.train)} training streams; "
                f"held-out {streams.summary_line(held)}")
        line = streams.summary_line
        stored_on = profile
    else:
        runs = cmp.load_runs(files)
        if host_speed:
            runs = [cmp.at_profile_speed(r) for r in runs]
            _host_line(runs)
        tick, done = _progress(len(fitting.on_profile(runs, profile, draft_profile)), "fitting")
        result = fitting.fit(runs, profile, progress=tick, draft_profile=draft_profile, every=train_every)
        done()
        held = result.after["held_out"]
        note = (f"specsim calibrate fit on {', '.join(p.name for p in files)}: {len(result.train)} training runs; "
                f"held-out {report.summary_line(held)}")
        line = report.summary_line
        stored_on = draft_profile or profile
    o = result.overheads.model_copy(update={"fitted": note})
    console.print(f"fitted overheads for {stored_on}: {_overheads(o)}")
    for split in ("train", "held_out"):
        for when in ("before", "after"):
            got = getattr(result, when)
            shown = line(got[split]) if served else line(got[split], got["train"] if split == "held_out" else ())
            console.print(f"{split:9s} {when + ':':7s} {shown}", soft_wrap=True)
    if write:
        console.print(f"stored in {fitting.store(stored_on, o)}")
    else:
        console.print("not stored (--write stores them in the profile)")
    if out is not None:
        _write_fit(out, result, o, stored_on, files, bool(served), console)


def _write_fit(out: Path, result, o, stored_on: str, files: list[Path], served: bool, console) -> None:
    """fit's --out: serving.json for streams; report.md and scatter.png for runs."""
    from . import report, streams

    out.mkdir(parents=True, exist_ok=True)
    if served:
        (out / "serving.json").write_text(json.dumps({"overheads": o.model_dump(), **{
            f"{split}_{when}": streams.summarize(getattr(result, when)[split])
            for split in ("train", "held_out") for when in ("before", "after")}}, indent=2))
        console.print(f"wrote {out}/serving.json")
        return
    held = result.after["held_out"]
    sections = {"held out, before fit": result.before["held_out"], "held out, after fit": held,
                "training, after fit": result.after["train"]}
    notes = [f"Profile `{stored_on}`; fitted overheads: {_overheads(o)}.",
             f"Measurements: {', '.join(map(str, files))}"]
    (out / "report.md").write_text(report.markdown(f"Calibration fit: {stored_on}", sections, notes))
    report.scatter({"held out, before": result.before["held_out"], "held out, after": held},
                   out / "scatter.png", f"{stored_on}: held-out runs")
    console.print(f"wrote {out}/report.md, scatter.png")
