"""Scenario files: the pydantic schema, every field documented with its unit (loading.py reads them)."""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from . import catalog, strategies
from .fields import NonNeg, Prob, Strict
from .fields import Ref as _Ref
from .profiles import ConstantSpec, Overheads, RooflineSpec
from .tensor_parallel import Interconnect
from .strategies import Placement  # noqa: F401 (part of the scenario schema)


# Limits that keep a run within memory and time; each is named in its field's description.
MAX_TOKENS = 1_000_000  # a prompt or output length, in tokens (a run tabulates every context up to their sum)
MAX_REQUESTS = 10_000_000  # requests of one run, given or expected (Poisson rate_per_s x duration_s)
MAX_USERS = 1_000_000  # concurrent users of a closed loop
MAX_LOSS = 0.99  # a link's loss probability: at most 100 attempts per message on average
MAX_WEIGHT_BITS = 32  # bits per stored weight: fp32, the widest dtype a profile runs
MAX_GPUS = 64  # GPUs of one device (a tensor-parallel group)


# ---------------------------------------------------------------- models and devices


class ModelSpec(Strict):
    """A model: a preset, optionally with fields replaced, or a custom architecture."""

    preset: str | None = Field(None, description="Name of a model preset (see `specsim models`).")
    layers: int | None = Field(None, gt=0, description="Decoder blocks.")
    hidden: int | None = Field(None, gt=0, description="Hidden size, in elements.")
    heads: int | None = Field(None, gt=0, description="Attention heads.")
    kv_heads: int | None = Field(None, gt=0, description="Key/value heads (grouped-query attention).")
    ffn: int | None = Field(None, gt=0, description="MLP intermediate size, in elements.")
    vocab: int | None = Field(None, gt=0, description="Vocabulary size, in tokens.")
    dtype_bytes: int | None = Field(None, gt=0, description="Bytes per activation and KV-cache element "
                                    "(and per weight, unless `weight_bits` is set); 2 for the presets (fp16/bf16).")
    weight_bits: float | None = Field(
        None, gt=0, le=MAX_WEIGHT_BITS, allow_inf_nan=False,
        description="Bits per stored weight, for quantised weights (4.5 for llama.cpp's Q4_K or Q4_0, 8.5 for Q8_0; "
        f"at most {MAX_WEIGHT_BITS}, fp32): sizes the weights in memory and the weight bytes a roofline forward "
        "reads, in bits per parameter. Activations, the KV cache and payloads keep `dtype_bytes`; FLOPs are "
        "unchanged; measured profiles (CSV grids) keep their measured latencies. Default: 8 x `dtype_bytes` "
        "(unquantised; a roofline's `dtype_bytes` then sizes the weights too).")
    tokenizer: str | None = Field(None, description="Name of the model's tokenizer: a draft and its target of "
                                  "different tokenizers need a `vocabulary` bridge. Default: one per vocabulary "
                                  "size (models of equal `vocab` are taken to share theirs).")

    def tokenizer_name(self) -> str:
        return self.tokenizer or f"vocab-{self.architecture().vocab}"

    @model_validator(mode="after")
    def _known(self):
        if self.preset is not None and self.preset not in catalog.PRESETS:
            raise _Ref("preset", f"unknown preset {self.preset!r} (known: {', '.join(catalog.PRESETS)})")
        if self.preset is None:
            missing = [f for f in ("layers", "hidden", "heads", "ffn") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"a custom model needs {', '.join(missing)} (or a preset)")
        arch = self.architecture()
        if arch.head_dim < 1:
            raise _Ref("heads", f"hidden ({arch.hidden}) must be at least heads ({arch.heads}): the head size "
                       "hidden // heads is 0, so the model would have no KV cache")
        return self

    def architecture(self) -> catalog.Architecture:
        fields = self.model_dump(exclude={"preset", "tokenizer"})
        if self.preset is None and fields["kv_heads"] is None:
            fields["kv_heads"] = fields["heads"]
        return catalog.resolve(self.preset, **fields)


InlineProfile = Annotated[Union[ConstantSpec, RooflineSpec], Field(discriminator="kind")]


class Power(Strict):
    """A device's electrical power, for the report's energy figures: `busy` while it runs a job,
    `idle` otherwise (a datasheet's TDP is an upper bound for busy; say where the figures come from
    in the scenario's comments)."""

    idle: NonNeg = Field(description="Power while the device runs nothing, in W.")
    busy: NonNeg = Field(description="Power while the device runs a job, in W (at least idle).")

    @model_validator(mode="after")
    def _busy_at_least_idle(self):
        if self.busy < self.idle:
            raise ValueError(f"busy ({self.busy:g} W) must be at least idle ({self.idle:g} W)")
        return self


class Vocabulary(Strict):
    """How drafts cross from a draft's tokenizer to its target's (Timor et al., ICML 2025)."""

    method: Literal["slem", "tli"] = Field(description="slem: each drafted token is detokenized and the text "
                                           "re-tokenized for the target (string-level exact match); tli: the "
                                           "draft samples only tokens both vocabularies share (token-level "
                                           "intersection). A label: the costs below say what it does.")
    retokenize_ms_per_token: NonNeg = Field(0.0, description="Host time per drafted token to carry it across, "
                                            "in ms, added to every draft forward per sequence in it (one "
                                            "drafted token each), on the draft's device.")
    acceptance_factor: float = Field(1.0, gt=0, le=1, allow_inf_nan=False, description="Multiplies the "
                                     "probability that each drafted position is accepted (the survival P(K >= j) "
                                     "becomes P(K >= j) x factor^j): what the bridge loses, as a fraction.")


class DeviceSpec(Strict):
    profile: str | InlineProfile = Field(
        description="A folder in hardware_profiles/ (or a path to one), or an inline profile: "
        "{kind: constant, forward_ms: {MODEL: ms}} or {kind: roofline, ...}."
    )
    memory_gb: float | None = Field(
        None, gt=0, description="Memory for weights and KV cache of one GPU, in GB; defaults to the profile's."
    )
    gpus: int = Field(1, ge=1, le=MAX_GPUS, description="GPUs of the profile's kind that make up this device, "
                      f"at most {MAX_GPUS}: a model placed on it is split over them by tensor parallelism "
                      "(its placement's `tp`, default all of them), and they run in lock step as one server; "
                      "memory, price and power count every GPU.")
    interconnect: Interconnect | None = Field(None, description="How the GPUs exchange activations "
                                              "(required when a model is split over more than one).")
    cost_per_hour: float | None = Field(None, ge=0, description="Price of one of its GPUs (of the device, when "
                                        "it has one), in USD per hour.")
    power_w: Power | None = Field(None, description="Electrical power of one of its GPUs idle and busy, in W: "
                                  "the report then gives the device's energy, and plan its tokens per joule.")
    overheads: Overheads | None = Field(None, description="Replaces the profile's fitted decoding-loop "
                                        "overheads (what-if: 'no host overhead' is {forward_ms: 0, step_ms: 0}).")


class LinkSpec(Strict):
    """A full-duplex link: each direction carries one message at a time, first come first served;
    a message of S bytes occupies its direction for 8 S / bandwidth and arrives one latency later
    (plus jitter). A lost transmission is sent again; links on one medium share its transmitters."""

    a: str = Field(description="Device at one end (the drafting side for speculative decoding).")
    b: str = Field(description="Device at the other end.")
    name: str | None = Field(None, description="Name in the report; defaults to 'a-b'.")
    bandwidth_mbps: float = Field(gt=0, allow_inf_nan=True, description="Bandwidth of each direction, in Mbit/s "
                                  "(.inf allowed: a free link).")
    latency_ms: NonNeg = Field(0.0, description="One-way propagation delay, in ms.")
    jitter_ms: NonNeg = Field(
        0.0, description="Spread of the one-way delay, in ms: the standard deviation for normal jitter, "
        "the mean extra delay for exponential and uniform jitter."
    )
    header_bytes: int = Field(64, ge=0, description="Bytes added to every message (framing, headers).")
    up_mbps: float | None = Field(None, gt=0, allow_inf_nan=True, description="Bandwidth from a to b, in Mbit/s "
                                  "(.inf allowed: free); "
                                  "defaults to bandwidth_mbps.")
    down_mbps: float | None = Field(None, gt=0, allow_inf_nan=True, description="Bandwidth from b to a, in Mbit/s "
                                    "(.inf allowed: free); "
                                    "defaults to bandwidth_mbps.")
    jitter_kind: Literal["normal", "exponential", "uniform"] = Field(
        "normal", description="Distribution of the one-way delay: normal: max(0, latency + N(0, jitter^2)) "
        "(mean latency while jitter << latency); exponential: latency + Exp(mean jitter) (mean latency + jitter); "
        "uniform: latency + U(0, 2 jitter) (mean latency + jitter).")
    loss: float = Field(0.0, ge=0, le=MAX_LOSS, allow_inf_nan=False, description="Probability that one "
                        "transmission is lost (then sent again), a fraction in [0, 0.99]; mean attempts per message "
                        "1 / (1 - loss), at most 100 (each attempt is simulated).")
    retransmit_ms: NonNeg | None = Field(None, description="Time from the end of a lost transmission until it "
                                         "is sent again, in ms; defaults to 2 x latency_ms (a round trip).")
    medium: str | None = Field(None, min_length=1, description="Name of a shared medium: links naming the same "
                               "medium share one transmitter per direction (a to b, b to a), so their "
                               "transfers queue for it together.")

    @property
    def label(self) -> str:
        return self.name or f"{self.a}-{self.b}"


# ---------------------------------------------------------------- strategies (one module each: strategies/)

Strategy = strategies.union()  # every registered strategy spec, chosen by its `kind`


# ---------------------------------------------------------------- acceptance


class Iid(Strict):
    """Each drafted token is accepted with probability alpha, independently."""

    kind: Literal["iid"] = Field(description="Acceptance kind: one probability for all positions.")
    alpha: Prob = Field(description="Per-token acceptance probability.")


class PerPosition(Strict):
    """Drafted token i is accepted with probability alphas[i] given all before it were."""

    kind: Literal["per_position"] = Field(description="Acceptance kind: one probability per draft position.")
    alphas: list[Prob] = Field(min_length=1, description="Acceptance probability per draft position; "
                               "positions past the list use its last value.")


class Empirical(Strict):
    """A histogram of accepted tokens per step; counts above gamma are clipped to gamma."""

    kind: Literal["empirical"] = Field(description="Acceptance kind: a histogram of accepted counts.")
    counts: list[NonNeg] = Field(min_length=1, description="counts[k]: how often k drafted tokens were "
                                 "accepted in a step (any scale).")

    @model_validator(mode="after")
    def _nonzero(self):
        if sum(self.counts) <= 0:
            raise _Ref("counts", "counts must not all be zero")
        if not math.isfinite(sum(self.counts)):
            raise _Ref("counts", "counts must have a finite sum (below 1.8e308); scale them down")
        return self


class TraceAcceptance(Strict):
    """Accepted counts per step replayed in order (cyclically), clipped to gamma."""

    kind: Literal["trace"] = Field(description="Acceptance kind: counts replayed from a file or a list.")
    path: str | None = Field(None, description="Text or CSV file with one accepted count per line (column "
                             "'accepted' if it has a header); relative to the scenario file.")
    counts: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, min_length=1, description="Or the accepted counts themselves, one per step.")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.path is None) == (self.counts is None):
            raise ValueError("give either path or counts")
        return self


Acceptance = Annotated[Union[Iid, PerPosition, Empirical, TraceAcceptance], Field(discriminator="kind")]


# ---------------------------------------------------------------- workload


class Uniform(Strict):
    kind: Literal["uniform"] = Field(description="Distribution: uniform over low..high.")
    low: int = Field(ge=1, le=MAX_TOKENS, description="Smallest length, in tokens (at most 1,000,000).")
    high: int = Field(ge=1, le=MAX_TOKENS, description="Largest length, in tokens (inclusive; at most 1,000,000).")

    @model_validator(mode="after")
    def _ordered(self):
        if self.low > self.high:
            raise ValueError("low must be <= high")
        return self


class LogNormal(Strict):
    kind: Literal["lognormal"] = Field(description="Distribution: log-normal, rounded and clipped.")
    median: float = Field(gt=0, description="Median length, in tokens.")
    sigma: NonNeg = Field(description="Standard deviation of the log length.")
    low: int = Field(1, ge=1, le=MAX_TOKENS, description="Lengths are clipped to at least this, in tokens "
                     "(at most 1,000,000).")
    high: int = Field(32768, ge=1, le=MAX_TOKENS, description="Lengths are clipped to at most this, in tokens "
                      "(at most 1,000,000).")

    @model_validator(mode="after")
    def _ordered(self):
        if self.low > self.high:
            raise ValueError("low must be <= high")
        return self


class Choice(Strict):
    kind: Literal["choice"] = Field(description="Distribution: one of the values, by weight.")
    values: list[Annotated[int, Field(ge=1, le=MAX_TOKENS)]] = Field(min_length=1, description="Lengths, in "
                                                                     "tokens (each at most 1,000,000).")
    weights: list[NonNeg] | None = Field(None, description="Relative weights of the values (default equal).")

    @model_validator(mode="after")
    def _weights(self):
        if self.weights is not None and (len(self.weights) != len(self.values) or sum(self.weights) <= 0):
            raise _Ref("weights", "weights must match values in length and not all be zero")
        if self.weights is not None and not math.isfinite(sum(self.weights)):
            raise _Ref("weights", "weights must have a finite sum (below 1.8e308); scale them down")
        return self


Length = Union[Annotated[int, Field(ge=1, le=MAX_TOKENS)], Annotated[Union[Uniform, LogNormal, Choice], Field(discriminator="kind")]]


class ClosedLoop(Strict):
    """N users, each sending its next request when the previous one finishes (after a think time)."""

    kind: Literal["closed_loop"] = Field(description="Arrival kind: N users in a closed loop.")
    users: int = Field(1, ge=1, le=MAX_USERS, description="Concurrent users (at most 1,000,000).")
    think_ms: NonNeg = Field(0.0, description="Pause between a response and the user's next request, in ms.")


class Poisson(Strict):
    kind: Literal["poisson"] = Field(description="Arrival kind: a Poisson process.")
    rate_per_s: float = Field(gt=0, allow_inf_nan=False, description="Mean arrival rate, in requests per second.")


class TraceArrivals(Strict):
    kind: Literal["trace"] = Field(description="Arrival kind: times replayed from a CSV file.")
    path: str = Field(description="CSV with column arrival_s and optionally prompt_tokens and output_tokens "
                      "(which then replace the workload's lengths); relative to the scenario file.")


Arrival = Annotated[Union[ClosedLoop, Poisson, TraceArrivals], Field(discriminator="kind")]


class Workload(Strict):
    arrival: Arrival = Field(ClosedLoop(kind="closed_loop"), description="How requests arrive.")
    requests: int | None = Field(None, ge=1, le=MAX_REQUESTS, description="Number of requests (default: 100; a trace's rows; with "
                                "duration_s, as many as arrive: in a closed loop at most users x (duration_s / think + 1), or "
                                "1,000,000 without think time); at most 10,000,000.")
    duration_s: float | None = Field(None, gt=0, allow_inf_nan=False, description="Stop admitting requests after "
                                     "this simulated time, in s; those admitted still finish. Without requests, "
                                     "a Poisson arrival's rate_per_s x duration_s may expect at most 10,000,000.")
    prompt_tokens: Length = Field(128, description="Prompt length, in tokens (at most 1,000,000): a number or a "
                                  "distribution.")
    output_tokens: Length = Field(128, description="Output length, in tokens (at most 1,000,000): a number or a "
                                  "distribution.")

    @model_validator(mode="after")
    def _bounded(self):
        arrival = self.arrival
        if isinstance(arrival, Poisson) and self.requests is None and self.duration_s is not None:
            expected = arrival.rate_per_s * self.duration_s
            if expected > MAX_REQUESTS:
                raise _Ref("duration_s", f"rate_per_s x duration_s expects {expected:.3g} requests, more than "
                           f"the limit of {MAX_REQUESTS:,} per run: shorten it or give requests")
        return self


class SloSpec(Strict):
    """A service-level objective: a request meets it when its TTFT <= ttft_ms and its TPOT <= tpot_ms
    (a target left out is not checked; a one-token request has no TPOT and meets that part)."""

    ttft_ms: float | None = Field(None, gt=0, allow_inf_nan=False, description="Target time to first token "
                                  "(first token time - arrival time), in ms.")
    tpot_ms: float | None = Field(None, gt=0, allow_inf_nan=False, description="Target time per output token "
                                  "after the first ((finish - first token) / (output tokens - 1)), in ms.")
    percentile: float = Field(99.0, gt=0, lt=100, allow_inf_nan=False, description="The SLO is met when this "
                              "percentile of TTFT and of TPOT over the requests is within target, in percent.")

    @property
    def limits_s(self) -> tuple[float, float]:
        """(TTFT, TPOT) targets in seconds; a target left out is infinite."""
        return (math.inf if self.ttft_ms is None else self.ttft_ms / 1000,
                math.inf if self.tpot_ms is None else self.tpot_ms / 1000)


# ---------------------------------------------------------------- the scenario


class Scenario(Strict):
    name: str = Field("scenario", description="Name shown in the report.")
    seed: int = Field(0, ge=0, description="Seed of every random stream (workload, acceptance, network).")
    models: dict[str, ModelSpec] = Field(min_length=1, description="Models by key.")
    devices: dict[str, DeviceSpec] = Field(min_length=1, description="Devices by key.")
    links: list[LinkSpec] = Field([], description="Links between devices.")
    strategy: Strategy = Field(description="How tokens are produced.")
    acceptance: Acceptance = Field(Iid(kind="iid", alpha=0.8), description="How many drafted tokens are accepted.")
    workload: Workload = Field(Workload(), description="Requests and their lengths.")
    slo: SloSpec | None = Field(None, description="Service-level objective; when given, the report gains "
                                "`slo`: attainment, goodput and whether the percentile latencies are within target.")
    vocabulary: Vocabulary | None = Field(None, description="The bridge between a draft and a target of different "
                                          "tokenizers (required then, refused otherwise); applies to every draft.")

    @model_validator(mode="after")
    def _references(self):
        places = self.strategy.placements()
        for role, place in places.items():
            if place.model not in self.models:
                raise _Ref(f"strategy.{role}.model", f"unknown model {place.model!r} (known: {', '.join(self.models)})")
            if place.device not in self.devices:
                raise _Ref(f"strategy.{role}.device", f"unknown device {place.device!r} (known: {', '.join(self.devices)})")
            self._check_split(role, place, places)
            profile = self.devices[place.device].profile
            if isinstance(profile, ConstantSpec) and place.model not in profile.forward_ms:
                raise _Ref(f"devices.{place.device}.profile.forward_ms",
                           f"needs a time for model {place.model!r}, which runs on this device")
        seen = set()
        for i, link in enumerate(self.links):
            for end in ("a", "b"):
                if getattr(link, end) not in self.devices:
                    raise _Ref(f"links.{i}.{end}", f"unknown device {getattr(link, end)!r} (known: {', '.join(self.devices)})")
            if link.a == link.b:
                raise _Ref(f"links.{i}", "a link joins two different devices")
            pair = frozenset((link.a, link.b))
            if pair in seen:
                raise _Ref(f"links.{i}", f"a second link between {link.a} and {link.b}")
            seen.add(pair)
        for one, other in self.strategy.exchanges():
            d, t = places[one].device, places[other].device
            if d != t and self.link_between(d, t) is None:
                raise _Ref("links", f"{one} on {d!r} and {other} on {t!r} need a link between them")
        self._check_vocabulary(places)
        self.strategy.check(self)
        return self

    def tp(self, place) -> int:
        """Over how many GPUs a placed model is split: its placement's tp, else all its device's."""
        return place.tp or self.devices[place.device].gpus

    def _check_split(self, role: str, place, places) -> None:
        device = self.devices[place.device]
        tp = self.tp(place)
        where = f"strategy.{role}.tp" if place.tp is not None else f"devices.{place.device}.gpus"
        if device.gpus % tp:
            raise _Ref(where, f"tp {tp} must divide the {device.gpus} GPUs of device {place.device!r}")
        if tp > 1 and device.interconnect is None:
            raise _Ref(f"devices.{place.device}.interconnect", f"model {place.model!r} is split over {tp} GPUs: give "
                       "the interconnect between them ({bandwidth_gb_s, latency_us} or a measured allreduce table)")
        try:
            self.models[place.model].architecture().shard(tp)
        except ValueError as exc:
            raise _Ref(where, str(exc)) from None
        for other, p in places.items():
            if (p.model, p.device) == (place.model, place.device) and self.tp(p) != tp:
                raise _Ref(where, f"model {place.model!r} runs on device {place.device!r} split {tp} ways here and "
                           f"{self.tp(p)} ways at strategy.{other}: one split per model and device")

    def mismatched_drafts(self) -> bool | None:
        """Do the strategy's drafts use another tokenizer than its targets? None without drafts;
        raises where some do and some do not."""
        from .strategies.base import Role

        places = self.strategy.placements()
        targets = {self.models[p.model].tokenizer_name() for p in places.values() if p.role is not Role.DRAFT}
        drafts = {k: self.models[p.model].tokenizer_name() for k, p in places.items() if p.role is Role.DRAFT}
        if not drafts:
            return None
        differ = {k: t not in targets or len(targets) > 1 for k, t in drafts.items()}
        if len(set(differ.values())) > 1:
            raise _Ref("vocabulary", "a vocabulary bridge applies to every draft: the drafts must all use another "
                       "tokenizer than the target's, or all the same one (" + ", ".join(
                           f"{k}: {drafts[k]}" for k in drafts) + f"; target: {', '.join(sorted(targets))})")
        return next(iter(differ.values()))

    def _check_vocabulary(self, places) -> None:
        differ = self.mismatched_drafts()
        if differ and self.vocabulary is None:
            names = {k: self.models[p.model].tokenizer_name() for k, p in places.items()}
            raise _Ref("vocabulary", "the draft and the target use different tokenizers ("
                       + ", ".join(f"{k} {names[k]}" for k in names) + "): give vocabulary: {method: slem|tli, "
                       "retokenize_ms_per_token, acceptance_factor}, or models of one tokenizer")
        if self.vocabulary is not None and not differ:
            raise _Ref("vocabulary", "is only for a draft and a target of different tokenizers; these share one")
        if self.vocabulary is not None and self.vocabulary.acceptance_factor < 1 and self.acceptance.kind == "trace":
            raise _Ref("vocabulary.acceptance_factor", "cannot thin a replayed acceptance trace: give a "
                       "distribution (iid, per_position, empirical) or a factor of 1")

    def link_between(self, a: str, b: str) -> LinkSpec | None:
        for link in self.links:
            if {link.a, link.b} == {a, b}:
                return link
        return None


# loading (loading.py), here too: a scenario is read as sc.load, sc.parse, sc.read_data, sc.apply_override
from .loading import apply_override, load, parse, read_data  # noqa: E402,F401 (after Scenario: it uses it)
