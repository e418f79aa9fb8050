"""Latency models: the time of one forward pass of a model on a device.

A forward pass runs `batch` sequences, each adding `query_tokens` new tokens on top of
`context_tokens` already in the KV cache. Three kinds:

- measured (or derived) profile folders, hardware_profiles/<name>/: a `<model>.csv` grid per
  model, exact at grid points and linearly interpolated between them (never assumed
  monotone). Outside the grid: above the largest batch or query size, time scales in
  proportion to batch x query tokens (compute-bound); above the largest context, linearly
  from the last two context points (attention reads grow linearly with context); below the
  smallest point, the smallest point's time. Each such use is reported as a warning.
- derived roofline profiles (a folder whose profile.yaml has provenance: derived and a
  `roofline` block, or inline): time = fixed overhead + kernel launches +
  max(FLOPs / (peak x compute efficiency), bytes / (bandwidth x memory efficiency)).
- constant (inline, for what-if and tests): forward_ms + per_token_ms x batch x query.

The hot path never calls scipy: `ForwardTime` evaluates a profile once per (batch, query) over
every context the run can reach and answers lookups (and sums over consecutive contexts, as a
draft phase needs) from plain lists.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Callable, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .catalog import Architecture
from .errors import InputError
from .formats import FormatError, load_yaml, read_input
from .measured_grid import Grid

# the shipped profiles: hardware_profiles/ of the source tree, which the package links to as
# simulator/hardware_profiles and a wheel carries as files
BUILTIN_DIR = Path(__file__).parent / "hardware_profiles"

Ms = Annotated[float, Field(ge=0, allow_inf_nan=False)]
MsFn = Callable[[int, int, np.ndarray], np.ndarray]  # (batch, query, contexts) -> ms per forward


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # no NaN, no infinity


class ConstantSpec(_Strict):
    """A fixed time per forward pass per model, plus an optional time per query token."""

    kind: Literal["constant"] = Field(description="Profile kind: a fixed time per forward pass.")
    forward_ms: dict[str, Ms] = Field(description="Time of one forward pass per model key, in ms.")
    per_token_ms: dict[str, Ms] = Field({}, description="Extra time per token in the pass "
                                        "(batch x query tokens) per model key, in ms.")
    memory_gb: float = Field(1e9, gt=0, description="Device memory, in GB (default: unlimited).")


class RooflineSpec(_Strict):
    """Roofline estimate of a device from its datasheet; used where nothing was measured."""

    kind: Literal["roofline"] = Field("roofline", description="Profile kind: a roofline estimate from datasheet "
                                         "numbers (required inline, optional in profile.yaml).")
    peak_tflops: float = Field(gt=0, description="Dense matrix throughput at the profile's dtype, in TFLOP/s.")
    memory_bandwidth_gbps: float = Field(gt=0, description="Memory bandwidth, in GB/s.")
    compute_efficiency: float = Field(0.6, gt=0, le=1, description="Fraction of peak FLOP/s reached.")
    memory_efficiency: float = Field(0.75, gt=0, le=1, description="Fraction of peak bandwidth reached.")
    launch_overhead_us: float = Field(5.0, ge=0, description="Time per kernel launch, in microseconds.")
    kernels_per_layer: int = Field(12, ge=0, description="Kernel launches per decoder block.")
    fixed_overhead_ms: float = Field(0.0, ge=0, description="Time per forward pass outside the model "
                                     "(framework, sampling), in ms.")
    dtype_bytes: int | None = Field(None, gt=0, description="Bytes per weight and KV element on this device "
                                    "(4 for fp32 CPU inference); default: the model's own. A model's "
                                    "`weight_bits`, when set, still sizes its weights.")
    memory_gb: float = Field(1e9, gt=0, description="Device memory, in GB (default: unlimited).")


class Overheads(_Strict):
    """Time a forward-pass profile does not see, fitted from real runs by `specsim calibrate fit`."""

    forward_ms: float = Field(0.0, ge=0, description="Added to every forward pass of a target (or "
                              "autoregressive) model: launch and host work around the pass in a decoding loop, in ms.")
    draft_forward_ms: float = Field(0.0, ge=0, description="Added to every forward pass of a draft model, in ms "
                                    "(a loop that does not synchronise between draft passes overlaps some of it).")
    step_ms: float = Field(0.0, ge=0, description="Added to every decoding step (host synchronisation, "
                           "acceptance, cache rollback, bookkeeping), in ms.")
    draft_call_ms: float = Field(0.0, ge=0, allow_inf_nan=False, description="Added to every draft phase (a "
                                 "step's draft forwards, called once: the nested `generate` of Hugging Face's "
                                 "assisted generation sets itself up every step), in ms; taken from the draft's device.")
    message_ms: float = Field(0.0, ge=0, allow_inf_nan=False, description="Host time per message this device "
                              "sends or receives over a link (serialising, system calls, the proxy's or kernel's "
                              "hops, waking the process that waits for it), in ms: a message arrives its "
                              "sender's and its receiver's message_ms after the link alone would deliver it "
                              "(busy time of neither device).")
    fitted: str | None = Field(None, description="What they were fitted on, and the held-out error.")


class PassSpread(_Strict):
    """How far a measured grid's passes disagree, over its points: per point, (largest - smallest) /
    median of the per-pass medians."""

    median: float = Field(ge=0, allow_inf_nan=False, description="At the median point, as a fraction.")
    p90: float = Field(ge=0, allow_inf_nan=False, description="At the 90th-percentile point, as a fraction.")
    max: float | None = Field(None, ge=0, allow_inf_nan=False, description="At the worst point, as a fraction "
                              "(unset where it was not recorded).")


class ProfileMeta(_Strict):
    """profile.yaml of a profile folder."""

    device: str = Field(description="Hardware, as its maker names it.")
    provenance: Literal["measured", "derived"] = Field(description="Measured on the hardware, or derived "
                                                        "from datasheet numbers.")
    method: str = Field(description="How it was measured, or what it was derived from.")
    execution: Literal["graph", "eager"] | None = Field(None, description="How the measured forward passes ran: "
                                                        "replayed from CUDA graphs (graph), as serving engines "
                                                        "decode, or launched op by op (eager).")
    pass_disagreement: dict[str, PassSpread] | None = Field(None, description="Per model, how far the grid's "
                                                             "repeated passes disagree (the machine's noise).")
    date: str | None = Field(None, description="When it was measured or derived (ISO date).")
    software: str | None = Field(None, description="Software stack of the measurement.")
    dtype: str = Field(description="Data type of weights and activations.")
    memory_gb: float = Field(gt=0, description="Memory usable for weights and KV cache, in GB.")
    cost_per_hour: float | None = Field(None, ge=0, description="Typical price, in USD per hour.")
    threads: int | None = Field(None, gt=0, description="CPU threads used by the measurement.")
    command: str | None = Field(None, description="The exact command that measured it.")
    sources: list[str] = Field([], description="Datasheets and pages the numbers come from.")
    roofline: RooflineSpec | None = Field(None, description="Roofline parameters (derived profiles).")
    overheads: Overheads = Field(Overheads(), description="Fitted overheads of a decoding loop.")
    grid_from: str | None = Field(None, description="Another profile whose <model>.csv grids this one reads: the same "
                                  "device and forward passes, another decoding loop (only the overheads differ).")


# ---------------------------------------------------------------- finding profiles


def search_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("SPECSIM_PROFILE_PATH", "").split(os.pathsep) if p]
    return extra + [BUILTIN_DIR]


def find(name: str) -> Path | None:
    if (Path(name) / "profile.yaml").is_file():
        return Path(name)
    for d in search_dirs():
        if (d / name / "profile.yaml").is_file():
            return d / name
    return None


def available() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in reversed(search_dirs()):
        if d.is_dir():
            found.update({p.parent.name: p.parent for p in sorted(d.glob("*/profile.yaml"))})
    return dict(sorted(found.items()))


def read_meta(folder: Path) -> ProfileMeta:
    """A profile folder's profile.yaml, validated; parsed once per process while the file is unchanged
    (its mtime and size), as the grids are (measured_grid._load): a plan or sweep opens its profiles for
    every trial, and every device that names one."""
    path = folder / "profile.yaml"
    try:
        stat = path.stat()
    except OSError:
        stat = None
    return _meta(path, stat and (stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=64)
def _meta(path: Path, version) -> ProfileMeta:
    text = read_input(path, "profile.yaml")
    try:
        data = load_yaml(text)
        meta = ProfileMeta.model_validate(data)
    except FormatError as exc:
        raise InputError(path, exc.field, exc.rule) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise InputError(path, "", f"not valid YAML: {' '.join(str(exc).split())}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        rule = {"extra_forbidden": "unknown key", "missing": "required field is missing"}.get(err["type"], err["msg"])
        raise InputError(path, ".".join(map(str, err["loc"])), rule) from None
    if meta.provenance == "derived" and meta.roofline is None:
        raise InputError(path, "roofline", "a derived profile needs roofline parameters")
    return meta


def grid_folder(folder: Path, meta: ProfileMeta) -> Path:
    """The folder of a profile's <model>.csv grids: its own, or that of the profile it names in grid_from."""
    if meta.grid_from is None:
        return folder
    found = find(meta.grid_from)
    if found is None:
        raise InputError(folder / "profile.yaml", "grid_from", f"unknown profile {meta.grid_from!r}")
    return found


# ---------------------------------------------------------------- profiles


@dataclass
class Profile:
    """A device's latency model: a function of (model, batch, query, contexts), plus memory."""

    name: str
    provenance: str
    memory_gb: float
    cost_per_hour: float | None
    ms_fn: Callable[..., MsFn]  # (model key, preset, architecture, tp=1): one GPU's share of a forward pass
    warnings: dict[str, str]
    overheads: Overheads = Overheads()


def open_profile(spec, field: str, source: str) -> Profile:
    """A Profile from a device's `profile` field: a folder name or path, or an inline spec."""
    warnings: dict[str, str] = {}
    if isinstance(spec, ConstantSpec):
        return Profile("constant", "inline", spec.memory_gb, None,
                       lambda key, _p, _a, tp=1: _constant(spec, key, tp), warnings)
    if isinstance(spec, RooflineSpec):
        return Profile("roofline", "inline", spec.memory_gb, None,
                       lambda _k, _p, arch, tp=1: _roofline(spec, arch.shard(tp)), warnings)
    folder = find(spec)
    if folder is None:
        raise InputError(source, field, f"unknown profile {spec!r} (known: {', '.join(available()) or 'none'})")
    meta = read_meta(folder)
    grids: dict[str, Grid | None] = {}
    csvs = grid_folder(folder, meta)

    def grid(name: str) -> Grid | None:
        if name not in grids:
            csv_path = csvs / f"{name}.csv"
            grids[name] = Grid(csv_path, f"{csvs.name}/{name}", warnings) if csv_path.is_file() else None
        return grids[name]

    def ms_fn(key: str, preset: str | None, arch: Architecture, tp: int = 1) -> MsFn:
        whole = grid(preset) if preset is not None else None
        if whole is not None and arch.weight_bits is not None:  # a grid is a measurement: its format is in its times
            warnings[f"{folder.name}:{key}:weight_bits"] = (
                f"model {key!r} sets weight_bits {arch.weight_bits:g}, but {folder.name} measured {preset} in "
                f"{meta.dtype}: its measured latencies are used unchanged (weight_bits sizes memory only)")
        if tp > 1 and preset is not None:  # one GPU's share of a tp-way split of a measured model
            share = _measured_share(folder.name, key, preset, tp, whole, grid, csvs, warnings)
            if share is not None:
                return share
            if whole is not None:
                warnings[f"{folder.name}:{key}:tp{tp}"] = (
                    f"{folder.name} has no measured {tp}-way share of {preset} ({preset}.tp{tp}.csv, from specsim "
                    f"profile --models {preset}.tp{tp}): one GPU's share is taken as the whole model's time / {tp}, "
                    "a lower bound (on the H200 in graph mode a 2-way share of llama2-7b took 1.06-1.68x half "
                    "the whole model's time, 1.50x at the median point)")
                return lambda b, q, c: whole(b, q, c) / tp
        if whole is not None:
            return whole
        if meta.roofline is not None:
            if meta.provenance == "measured":
                warnings[f"{folder.name}:{key}"] = (f"{folder.name} has no measurements for model {key!r}; "
                                                    "using its roofline parameters")
            return _roofline(meta.roofline, arch.shard(tp))
        measured = sorted(p.stem for p in csvs.glob("*.csv"))
        raise InputError(source, field, f"profile {folder.name!r} has no measurements for model {key!r} "
                         f"(preset {preset}; measured: {', '.join(measured) or 'none'})")

    return Profile(folder.name, meta.provenance, meta.memory_gb, meta.cost_per_hour, ms_fn, warnings,
                   meta.overheads)


def _measured_share(name, key, preset, tp, whole, grid, csvs, warnings) -> MsFn | None:
    """One GPU's share of a tp-way split of `preset` from a profile's grids: its own measured share
    (<preset>.tp<N>.csv), else one derived from the whole model's grid and the measured share of the
    nearest other degree (tensor_parallel.from_other_degree, with a warning), else None."""
    own = grid(f"{preset}.tp{tp}")
    if own is not None:
        return own
    degrees = sorted(int(d) for p in csvs.glob(f"{preset}.tp*.csv") if (d := p.stem.rpartition(".tp")[2]).isdigit())
    if whole is None or not degrees:
        return None
    m = min(degrees, key=lambda d: abs(np.log(d / tp)))  # the nearest measured degree, by ratio
    warnings[f"{name}:{key}:tp{tp}"] = (
        f"{name} has no measured {tp}-way share of {preset}: derived from its measured {m}-way share and the whole "
        f"model (the fraction of the time that does not split, carried from {m} to {tp} GPUs; on the H200 in graph "
        "mode this predicted measured 4-way shares of llama2-7b and llama2-13b from their 2-way ones within "
        "2.4-2.8% at the median point, 7.7-8.3% at the p90)")
    from .tensor_parallel import from_other_degree

    return from_other_degree(whole, grid(f"{preset}.tp{m}"), m, tp)


def _constant(spec: ConstantSpec, key: str, tp: int = 1) -> MsFn:
    """A fixed time, split evenly over tp GPUs (what-if: a perfect split)."""
    base, per_token = spec.forward_ms[key] / tp, spec.per_token_ms.get(key, 0.0) / tp
    return lambda batch, query, contexts: np.full(len(contexts), base + per_token * batch * query)


def _roofline(spec: RooflineSpec, arch: Architecture) -> MsFn:
    if spec.dtype_bytes is not None:
        arch = replace(arch, dtype_bytes=spec.dtype_bytes)
    matmul_flops, attention_flops = 2.0 * arch.matmul_params(), 4.0 * arch.layers * arch.hidden
    kv_bytes, weight_bytes = arch.kv_bytes_per_token(), arch.matmul_weight_bytes()  # weight_bits, if set
    flop_rate = spec.peak_tflops * 1e12 * spec.compute_efficiency
    byte_rate = spec.memory_bandwidth_gbps * 1e9 * spec.memory_efficiency
    base_ms = spec.fixed_overhead_ms + arch.layers * spec.kernels_per_layer * spec.launch_overhead_us / 1000

    def bounds(batch: int, query: int, contexts):
        """Seconds of compute and of memory traffic, for float contexts or an array of them."""
        tokens = batch * query
        attended = contexts + (query + 1) / 2  # causal: mean keys per new token
        flops = matmul_flops * tokens + attention_flops * tokens * attended
        return flops / flop_rate, (weight_bytes + batch * (contexts + query) * kv_bytes) / byte_rate

    def ms(batch: int, query: int, contexts: np.ndarray) -> np.ndarray:
        return base_ms + 1000 * np.maximum(*bounds(batch, query, np.asarray(contexts, dtype=float)))

    def point(batch: int, query: int, context: int) -> float:
        """ms(batch, query, [context])[0] to the last bit, in Python floats (one point costs less so)."""
        return base_ms + 1000 * max(bounds(batch, query, float(context)))

    ms.point = point
    return ms


# ---------------------------------------------------------------- hot-path lookups


class ForwardTime:
    """Forward-pass times of one model on one device, in seconds, from dense per-context tables,
    each including the profile's per-forward overhead; `step_s` is its per-step overhead."""

    def __init__(self, ms_fn: MsFn, max_context: int, overheads: Overheads = Overheads(), draft: bool = False):
        forward_ms = overheads.draft_forward_ms if draft else overheads.forward_ms
        self.profile_ms, self.overheads, self.max_context = ms_fn, overheads, max_context  # as built
        self._ms_fn = (lambda b, q, c: ms_fn(b, q, c) + forward_ms) if forward_ms else ms_fn
        point = getattr(ms_fn, "point", None)  # one point without an array, where the profile has it
        self._point_ms = (lambda b, q, c: point(b, q, c) + forward_ms) if point and forward_ms else point
        self.step_s = overheads.step_ms / 1000.0
        self.call_s = overheads.draft_call_ms / 1000.0 if draft else 0.0  # per draft phase
        self._span = max(int(max_context), 0) + 1
        self._tables: dict[tuple[int, int], tuple[list[float], list[float]]] = {}
        self._points: dict[tuple[int, int, int], float] = {}

    def _table(self, batch: int, query: int, need: int) -> tuple[list[float], list[float]]:
        table = self._tables.get((batch, query))
        if table is None or len(table[0]) < need:
            while self._span < need:
                self._span *= 2
            s = self._ms_fn(batch, query, np.arange(self._span)) / 1000.0
            table = (s.tolist(), np.concatenate([[0.0], np.cumsum(s)]).tolist())
            self._tables[(batch, query)] = table
        return table

    def forward_s(self, batch: int, query: int, context: int) -> float:
        """Seconds of one forward pass (from a dense table per (batch, query), for sizes that recur)."""
        values = self._tables.get((batch, query))
        if values is None or context >= len(values[0]):
            values = self._table(batch, query, context + 1)
        return values[0][context]

    def consecutive_s(self, batch: int, query: int, context: int, n: int) -> float:
        """Seconds of n consecutive forward passes at contexts context, context + 1, ..., context + n - 1."""
        if n == 1:
            return self.forward_s(batch, query, context)
        values = self._tables.get((batch, query))
        if values is None or context + n > len(values[0]):
            values = self._table(batch, query, context + n)
        return values[1][context + n] - values[1][context]

    def prefill_s(self, batch: int, query: int, context: int) -> float:
        """Seconds of one forward pass at an arbitrary size (a prompt or a piece of one), cached
        without a dense table."""
        key = (batch, query, context)
        value = self._points.get(key)
        if value is None:
            ms = self._point_ms(batch, query, context) if self._point_ms else \
                float(self._ms_fn(batch, query, np.array([context]))[0])
            value = self._points[key] = ms / 1000.0
        return value


def layer_share(forward: ForwardTime, layers: int, of_layers: int) -> ForwardTime:
    """Forward times of a model cut to its first `layers` of `of_layers` decoder blocks (early exit,
    as a self-speculative drafter runs it): the profile's time of the whole model x layers / of_layers
    at every (batch, query, context), plus the device's per-forward *draft* overhead
    (`draft_forward_ms`, not scaled: host work per pass does not shrink with depth). The embedding
    and LM head are scaled with the blocks, a small underestimate for very shallow drafts."""
    share = layers / of_layers
    ms_fn = forward.profile_ms
    return ForwardTime(lambda b, q, c: ms_fn(b, q, c) * share, forward.max_context, forward.overheads, draft=True)


def stage_share(forward: ForwardTime, layers: int, of_layers: int) -> ForwardTime:
    """Forward times of one pipeline stage that runs `layers` of a model's `of_layers` decoder blocks:
    the whole model's time on that device (the profile's time plus its per-forward overhead)
    x layers / of_layers, at every (batch, query, context); the per-step overhead (`step_s`) is
    kept whole, for the stage that ends a step to pay once. So the stages' times sum to one
    device's (shares sum to one), and a single stage is the model itself (the same object,
    hence exactly the same times). The embedding and LM head are scaled with the blocks."""
    if layers == of_layers:
        return forward
    share, ms_fn = layers / of_layers, forward._ms_fn  # _ms_fn: the profile's time plus the per-forward overhead
    return ForwardTime(lambda b, q, c: ms_fn(b, q, c) * share, forward.max_context,
                       forward.overheads.model_copy(update={"forward_ms": 0.0, "draft_forward_ms": 0.0}))
