"""Scenario files: the pydantic schema (every field documented with its unit) and loading.

A scenario is data: YAML is read with a safe loader, JSON and TOML load too, nothing in it
executes code, and relative paths resolve against the scenario file's folder.
"""

from __future__ import annotations

import enum
import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from . import catalog
from .errors import InputError
from .profiles import ConstantSpec, Overheads, RooflineSpec

NonNeg = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Prob = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    dtype_bytes: int | None = Field(None, gt=0, description="Bytes per weight and activation element.")

    @model_validator(mode="after")
    def _known(self):
        if self.preset is not None and self.preset not in catalog.PRESETS:
            raise _Ref("preset", f"unknown preset {self.preset!r} (known: {', '.join(catalog.PRESETS)})")
        if self.preset is None:
            missing = [f for f in ("layers", "hidden", "heads", "ffn") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"a custom model needs {', '.join(missing)} (or a preset)")
        return self

    def architecture(self) -> catalog.Architecture:
        fields = self.model_dump(exclude={"preset"})
        if self.preset is None and fields["kv_heads"] is None:
            fields["kv_heads"] = fields["heads"]
        return catalog.resolve(self.preset, **fields)


InlineProfile = Annotated[Union[ConstantSpec, RooflineSpec], Field(discriminator="kind")]


class DeviceSpec(Strict):
    profile: str | InlineProfile = Field(
        description="A folder in hardware_profiles/ (or a path to one), or an inline profile: "
        "{kind: constant, forward_ms: {MODEL: ms}} or {kind: roofline, ...}."
    )
    memory_gb: float | None = Field(
        None, gt=0, description="Memory for weights and KV cache, in GB; defaults to the profile's."
    )
    cost_per_hour: float | None = Field(None, ge=0, description="Price of the device, in USD per hour.")
    overheads: Overheads | None = Field(None, description="Replaces the profile's fitted decoding-loop "
                                        "overheads (what-if: 'no host overhead' is {forward_ms: 0, step_ms: 0}).")


class LinkSpec(Strict):
    """A full-duplex link: each direction carries one message at a time, first come first served;
    a message of S bytes occupies its direction for 8 S / bandwidth and arrives one latency later
    (plus jitter). A lost transmission is sent again; links on one medium share its transmitters."""

    a: str = Field(description="Device at one end (the drafting side for speculative decoding).")
    b: str = Field(description="Device at the other end.")
    name: str | None = Field(None, description="Name in the report; defaults to 'a-b'.")
    bandwidth_mbps: float = Field(gt=0, description="Bandwidth of each direction, in Mbit/s (.inf allowed).")
    latency_ms: NonNeg = Field(0.0, description="One-way propagation delay, in ms.")
    jitter_ms: NonNeg = Field(
        0.0, description="Spread of the one-way delay, in ms: the standard deviation for normal jitter, "
        "the mean extra delay for exponential and uniform jitter."
    )
    header_bytes: int = Field(64, ge=0, description="Bytes added to every message (framing, headers).")
    up_mbps: float | None = Field(None, gt=0, description="Bandwidth from a to b, in Mbit/s (.inf allowed); "
                                  "defaults to bandwidth_mbps.")
    down_mbps: float | None = Field(None, gt=0, description="Bandwidth from b to a, in Mbit/s (.inf allowed); "
                                    "defaults to bandwidth_mbps.")
    jitter_kind: Literal["normal", "exponential", "uniform"] = Field(
        "normal", description="Distribution of the one-way delay: normal: max(0, latency + N(0, jitter^2)) "
        "(mean latency while jitter << latency); exponential: latency + Exp(mean jitter) (mean latency + jitter); "
        "uniform: latency + U(0, 2 jitter) (mean latency + jitter).")
    loss: float = Field(0.0, ge=0, lt=1, allow_inf_nan=False, description="Probability that one transmission "
                        "is lost (then sent again), a fraction in [0, 1); mean attempts per message 1 / (1 - loss).")
    retransmit_ms: NonNeg | None = Field(None, description="Time from the end of a lost transmission until it "
                                         "is sent again, in ms; defaults to 2 x latency_ms (a round trip).")
    medium: str | None = Field(None, min_length=1, description="Name of a shared medium: links naming the same "
                               "medium share one transmitter per direction (a to b, b to a), so their "
                               "transfers queue for it together.")

    @property
    def label(self) -> str:
        return self.name or f"{self.a}-{self.b}"


# ---------------------------------------------------------------- strategies


class Placement(Strict):
    model: str = Field(description="Key of a model in `models`.")
    device: str = Field(description="Key of a device in `devices`.")

    def placed(self, role: Role) -> Placed:
        return Placed(self.model, self.device, role)


class Role(enum.Enum):
    """What a placed model does: drafts (charged the device's draft_forward_ms per forward), verifies
    as the target, or runs a pipeline stage of the target."""

    DRAFT = "draft"
    TARGET = "target"
    STAGE = "stage"


class Placed(NamedTuple):
    """A model on a device in a role, as a strategy places it."""

    model: str
    device: str
    role: Role


class StrategySpec(Strict):
    """What every strategy spec tells the engine and the checks: which model runs on which device
    in which role, and which devices exchange messages (and so need a link)."""

    def placements(self) -> dict[str, Placed]:
        """The models this strategy runs, by the field path that places each."""
        roles = {"draft": Role.DRAFT, "target": Role.TARGET}
        return {key: place.placed(role) for key, role in roles.items() if (place := getattr(self, key, None)) is not None}

    def exchanges(self) -> list[tuple[str, str]]:
        """Pairs of roles whose devices send each other messages."""
        return [("draft", "target")] if "draft" in self.placements() else []

    def lookahead_tokens(self) -> int:
        """Most tokens a step puts in a KV cache beyond the committed context (sizes the latency
        tables and the memory check): gamma for a chain of drafts."""
        return getattr(self, "gamma", 0)

    def check(self, scenario: Scenario) -> None:
        """Rules across this strategy and the rest of the scenario; raise _Ref(field, rule)."""



class Autoregressive(StrategySpec):
    """One target forward pass per output token."""

    kind: Literal["autoregressive"] = Field(description="Strategy kind: autoregressive decoding.")
    target: Placement = Field(description="Where the target model runs.")


class Speculative(StrategySpec):
    """Draft `gamma` tokens one forward at a time, verify them in one target forward over
    gamma + 1 tokens, commit the accepted ones plus one token from the target."""

    kind: Literal["speculative"] = Field(description="Strategy kind: draft, then verify.")
    draft: Placement = Field(description="Where the draft model runs (and where the user is).")
    target: Placement = Field(description="Where the target model runs.")
    gamma: int = Field(4, ge=0, le=64, description="Tokens drafted per step.")
    draft_payload: Literal["ids", "ids_probs", "full_dist"] = Field(
        "ids",
        description="What crosses the link per drafted token: token ids (4 B, greedy), ids with the "
        "draft probability (8 B), or ids with the full draft distribution (4 B + vocab x dtype bytes).",
    )


class Pearl(StrategySpec):
    """PEARL-style parallel draft and verify: the drafter drafts the next block while the target
    verifies the current one (post-verify), optionally with pre-verify and an adaptive draft
    length (PEARL's full mode); see simulator/strategies/pearl.py."""

    kind: Literal["pearl"] = Field(description="Strategy kind: drafting overlapped with verification.")
    draft: Placement = Field(description="Where the draft model runs (and where the user is).")
    target: Placement = Field(description="Where the target model runs.")
    gamma: int = Field(4, ge=0, le=64, description="Tokens per drafted block (draft_length fixed), or the most "
                       "per block and the most drafted past the block in verification (adaptive).")
    verify: Literal["post", "pre_post"] = Field(
        "post", description="When drafts are checked. post: in blocks, each verified while the drafter drafts "
        "on; after a rejection the target waits for new drafts. pre_post (PEARL): in addition, after a "
        "rejection the target's next forward (over its own new token, a query of 1) runs while the first "
        "new draft is made and judges it, so a rejected first draft costs about one target forward or one "
        "draft forward, whichever is longer; the drafter restarts from the target's token.")
    draft_length: Literal["fixed", "adaptive"] = Field(
        "fixed", description="Drafts per post-verified block. fixed: gamma tokens (fewer near the end), drafted "
        "before the verification starts. adaptive (PEARL): the tokens the drafter has finished when the "
        "previous verdict arrives (at least 1, at most gamma), so the block length follows the target's "
        "verification time.")
    draft_payload: Literal["ids", "ids_probs", "full_dist"] = Field(
        "ids", description="What crosses the link per drafted token, as for speculative.")


class Federated(StrategySpec):
    """Federated verification (SpecFed): K workers verify each drafted block in parallel and
    upload top-k probabilities; the drafter averages them and accepts."""

    kind: Literal["federated"] = Field(description="Strategy kind: K workers verify, the drafter aggregates.")
    draft: Placement = Field(description="Where the draft model runs; the user is there and it aggregates.")
    workers: list[Placement] = Field(min_length=1, description="The verifying workers: each a model on a device.")
    gamma: int = Field(4, ge=0, le=64, description="Tokens drafted per step.")
    top_k: int = Field(8, ge=1, le=100_000, description="Probabilities each worker uploads per position, "
                       "in tokens (each 4 B id + 2 B probability).")
    draft_payload: Literal["ids", "ids_probs", "full_dist"] = Field(
        "ids", description="What crosses each link per drafted token, as for speculative.")

    def placements(self) -> dict[str, Placed]:
        workers = {f"workers.{i}": w.placed(Role.TARGET) for i, w in enumerate(self.workers)}
        return {"draft": self.draft.placed(Role.DRAFT)} | workers

    def exchanges(self) -> list[tuple[str, str]]:
        return [("draft", f"workers.{i}") for i in range(len(self.workers))]


class SharedVerifier(StrategySpec):
    """Edge devices draft for their own users (DSD, SLED, GoodSpeed); their drafts cross each
    edge's link to one verifier, which verifies the waiting drafts in batches."""

    kind: Literal["shared_verifier"] = Field(description="Strategy kind: edge drafters, one batching verifier.")
    draft_model: str = Field(description="Key of the draft model in `models`, run on every edge device.")
    edges: list[str] = Field(min_length=1, description="Edge devices; user u drafts on edges[u mod len(edges)] "
                             "(open loops: request u).")
    target: Placement = Field(description="Where the verifier runs.")
    gamma: int = Field(4, ge=0, le=64, description="Tokens drafted per step.")
    policy: Literal["fcfs", "max_batch", "fair"] = Field(
        "fcfs", description="Which waiting verifications the free verifier takes: fcfs, the oldest up to "
        "max_batch; max_batch, the same after waiting up to max_wait_ms for a full batch; fair, the users "
        "with the lowest goodput so far first (proportional fairness, as GoodSpeed).")
    max_batch: int = Field(8, ge=1, le=1024, description="Most verifications in one batched target forward.")
    max_wait_ms: float = Field(0.0, ge=0, allow_inf_nan=False, description="max_batch policy: longest wait "
                               "for a full batch, in ms.")
    draft_payload: Literal["ids", "ids_probs", "full_dist"] = Field(
        "ids", description="What crosses the link per drafted token, as for speculative.")

    def placements(self) -> dict[str, Placed]:
        drafts = {f"edges.{i}": Placed(self.draft_model, e, Role.DRAFT) for i, e in enumerate(self.edges)}
        return drafts | {"target": self.target.placed(Role.TARGET)}

    def exchanges(self) -> list[tuple[str, str]]:
        return [(f"edges.{i}", "target") for i in range(len(self.edges))]


MAX_TREE_NODES = 4096
Branching = Annotated[list[Annotated[int, Field(ge=1, le=64)]], Field(max_length=64)]
Payload = Literal["ids", "ids_probs", "full_dist"]


def tree_levels(branching: list[int]) -> list[int]:
    """Nodes at depth 0 (the newest committed token), 1, ..., len(branching) of a token tree."""
    levels = [1]
    for b in branching:
        levels.append(levels[-1] * b)
    return levels


class _TreeShape(StrategySpec):
    """Fields and rules shared by the token-tree strategies."""

    branching: Branching = Field(
        [3, 2, 1], description="Children per node at each depth (depth = its length; [1] * g is a chain "
        "of g drafts, as speculative with gamma g), in tokens. At most 4096 nodes in all.")
    top_k_decay: float = Field(
        0.5, gt=0, le=1, allow_inf_nan=False, description="d (unitless): the rank-j child of a node "
        "(j = 1, 2, ...) matches the target's token with probability alpha_i x d^(j - 1), alpha_i the "
        "acceptance model's conditional acceptance at that depth.")
    draft_payload: Payload = Field("ids", description="What crosses the link per tree node, as for speculative.")

    @model_validator(mode="after")
    def _size(self):
        nodes = sum(tree_levels(self.branching)[1:])
        if nodes > MAX_TREE_NODES:
            raise _Ref("branching", f"the tree has {nodes} nodes; at most {MAX_TREE_NODES}")
        return self

    def lookahead_tokens(self) -> int:
        return sum(tree_levels(self.branching)[1:])

    def check(self, scenario: Scenario) -> None:
        if isinstance(scenario.acceptance, TraceAcceptance) and (max(self.branching, default=1) > 1 or self.kind != "tree"):
            raise _Ref("acceptance.kind", f"trace acceptance replays chain counts; strategy {self.kind} "
                       "with this branching needs iid, per_position or empirical acceptance")


class Tree(_TreeShape):
    """Token-tree speculation (SpecInfer, Medusa, Sequoia): the draft grows a tree one depth level per
    forward, the target verifies every node in one forward; see simulator/strategies/tree.py."""

    kind: Literal["tree"] = Field(description="Strategy kind: draft a token tree, verify it at once.")
    draft: Placement = Field(description="Where the draft model runs (and where the user is).")
    target: Placement = Field(description="Where the target model runs.")


class SelfSpeculative(StrategySpec):
    """Self-speculative decoding (LayerSkip, SPEED): the draft is the target's first `draft_layers`
    decoder blocks (early exit), so no second model and no link; see strategies/self_speculative.py."""

    kind: Literal["self_speculative"] = Field(description="Strategy kind: draft with the target's first layers.")
    target: Placement = Field(description="Where the target model runs (it drafts too).")
    draft_layers: int = Field(ge=1, description="k: decoder blocks (layers) the draft runs, the target's "
                              "first k; fewer than the target's layers.")
    gamma: int = Field(4, ge=0, le=64, description="Tokens drafted per step.")

    def check(self, scenario: Scenario) -> None:
        layers = scenario.models[self.target.model].architecture().layers
        if self.draft_layers >= layers:
            raise _Ref("strategy.draft_layers", f"must be < the target's layers ({layers})")


class Staged(_TreeShape):
    """Staged speculation (Spector and Re 2023): a token tree whose draft is itself sped up by
    speculative decoding with a smaller second-stage drafter; see simulator/strategies/staged.py."""

    kind: Literal["staged"] = Field(description="Strategy kind: a token tree drafted by a speculatively decoded draft.")
    draft: Placement = Field(description="Where the first-stage draft model runs (and where the user is).")
    target: Placement = Field(description="Where the target model runs.")
    draft2: Placement = Field(description="The second-stage drafter (e.g. an n-gram model: a tiny custom "
                              "model with a near-zero constant profile); on the draft's device.")
    inner_gamma: int = Field(4, ge=0, le=64, description="Tree depth levels the second stage proposes per "
                             "inner step, in levels (tokens, for a chain).")
    inner_alpha: Prob = Field(description="Probability (iid) that the draft accepts a level the second "
                              "stage proposed (a token, for a chain).")

    def placements(self) -> dict[str, Placed]:
        return {"draft": self.draft.placed(Role.DRAFT), "draft2": self.draft2.placed(Role.DRAFT),
                "target": self.target.placed(Role.TARGET)}

    def exchanges(self) -> list[tuple[str, str]]:
        return [("draft", "target")]

    def check(self, scenario: Scenario) -> None:
        super().check(scenario)
        if self.draft2.device != self.draft.device:
            raise _Ref("strategy.draft2.device", "the second-stage drafter runs on the draft's device "
                       f"({self.draft.device!r})")


class _PipelineStages(StrategySpec):
    """The target split by layers into stages on devices, consecutive stages joined by links
    (simulator/strategies/pipeline.py)."""

    model: str = Field(description="Key of the target model in `models`, split by layers over the stages.")
    stages: list[str] = Field(min_length=1, max_length=256, description="Devices of the pipeline stages, in "
                              "order: stage i runs the target's i-th block of layers and hands its activations "
                              "(tokens x hidden x dtype bytes) over the link to stage i + 1.")
    layers: list[Annotated[int, Field(ge=1)]] | None = Field(
        None, description="Decoder blocks (layers) per stage, one entry per stage, summing to the target's "
        "layers; default an even split (the first layers mod stages stages get one more).")
    draft_payload: Payload = Field("ids", description="What crosses the link to the first stage per drafted "
                                   "token, as for speculative.")

    def _head(self) -> str:
        return "draft" if getattr(self, "draft", None) is not None else "stages.0"

    def placements(self) -> dict[str, Placed]:
        draft = {"draft": self.draft.placed(Role.DRAFT)} if getattr(self, "draft", None) is not None else {}
        return draft | {f"stages.{i}": Placed(self.model, d, Role.STAGE) for i, d in enumerate(self.stages)}

    def exchanges(self) -> list[tuple[str, str]]:
        """Consecutive stages; the head (the draft, else the first stage) with the first stage; the
        last stage with the head (results return)."""
        n, head = len(self.stages), self._head()
        pairs = [(f"stages.{i}", f"stages.{i + 1}") for i in range(n - 1)]
        if head == "draft":
            pairs.append(("draft", "stages.0"))
        if f"stages.{n - 1}" != head:
            pairs.append((f"stages.{n - 1}", head))
        return pairs

    def stage_layers(self, total: int) -> list[int]:
        """Layers per stage: `layers`, or an even split of the target's `total`."""
        if self.layers is not None:
            return list(self.layers)
        n = len(self.stages)
        return [total // n + (1 if i < total % n else 0) for i in range(n)]

    def check(self, scenario: Scenario) -> None:
        if self.model not in scenario.models:
            return  # reported by the reference check
        total = scenario.models[self.model].architecture().layers
        if self.layers is None and len(self.stages) > total:
            raise _Ref("strategy.stages", f"{len(self.stages)} stages for a model of {total} layers; at most one "
                       "stage per layer")
        if self.layers is not None and (len(self.layers) != len(self.stages) or sum(self.layers) != total):
            raise _Ref("strategy.layers", f"needs one entry per stage ({len(self.stages)}) summing to the "
                       f"target's layers ({total}); got {len(self.layers)} summing to {sum(self.layers)}")


class Pipeline(_PipelineStages):
    """Pipeline-parallel decoding: every token traverses the target's stages in turn (autoregressive);
    with a `draft`, speculative decoding over the pipeline, one drafted micro-batch at a time."""

    kind: Literal["pipeline"] = Field(description="Strategy kind: the target split by layers over devices.")
    draft: Placement | None = Field(None, description="Optional drafter (the user is then at its device): "
                                    "draft gamma tokens, verify them through the pipeline, then the next "
                                    "(synchronous speculative decoding over the pipeline). Without it the user "
                                    "is at the first stage and decoding is autoregressive.")
    gamma: int = Field(4, ge=0, le=64, description="Tokens drafted per step (with a draft), in tokens.")


class PipeInfer(_PipelineStages):
    """PipeInfer-style asynchronous pipelined speculation (Butler et al., SC 2024): drafted micro-batches
    enter the pipeline while earlier ones are in flight, and a rejection cancels the micro-batches built
    on the rejected tokens, stopping a stage's job at the end of the layer under way; see strategies/pipeline.py."""

    kind: Literal["pipeinfer"] = Field(description="Strategy kind: asynchronous pipelined speculation.")
    draft: Placement = Field(description="Where the draft model runs (the head: the user is there, and it "
                             "verifies the results returning from the last stage).")
    gamma: int = Field(4, ge=0, le=64, description="Tokens per speculative micro-batch, in tokens (0: no "
                       "speculation, plain pipelined decoding).")
    max_in_flight: int = Field(4, ge=1, le=64, description="Most speculative micro-batches drafted and not yet "
                               "verified at once, in micro-batches (the canonical single-token run not counted).")

    def lookahead_tokens(self) -> int:
        return self.gamma * self.max_in_flight


class Speculation(Strict):
    """How many tokens each request in a batch drafts per step (simulator/speculation.py)."""

    policy: Literal["fixed", "goodput", "adaptive", "off_under_load"] = Field(
        "fixed", description="fixed: every request drafts gamma; goodput: one length for the batch, 0..gamma, "
        "maximising expected committed tokens per second from the acceptance estimate and the profile "
        "(SmartSpec); adaptive: per request, 2 more after a fully accepted step, 1 fewer after a rejection "
        "(1..gamma); off_under_load: gamma, or 0 while the batch is compute-bound.")
    gamma: int = Field(4, ge=0, le=64, description="Tokens drafted per request per step (fixed, "
                       "off_under_load), or the most (goodput, adaptive); in tokens.")
    compute_bound_ratio: float = Field(1.5, ge=1, allow_inf_nan=False, description="off_under_load: a batch "
                                       "is compute-bound when verifying 2 tokens per request takes more than this "
                                       "many times as long as 1 (unitless).")


class Batched(StrategySpec):
    """Serving with continuous batching (vLLM, Orca): requests join and leave the target's running batch
    between steps, admitted by KV-cache memory; optionally speculative (SmartSpec-style policies), with
    the draft beside the target or on a shared drafter device; see simulator/strategies/batched.py."""

    kind: Literal["batched"] = Field(description="Strategy kind: continuous batching on one target.")
    target: Placement = Field(description="Where the target model runs; every request is served there.")
    draft: Placement | None = Field(None, description="The draft model (speculative decoding for the whole "
                                    "batch): on the target's device, or on a device of its own joined by a link, "
                                    "batched in lockstep. Without it, autoregressive serving.")
    speculation: Speculation = Field(Speculation(), description="Draft length per request and step (with a draft).")
    max_batch: int = Field(64, ge=1, le=4096, description="Most requests admitted at once (running or "
                           "prefilling), in requests.")
    step_tokens: int = Field(2048, ge=1, le=1_000_000, description="Token budget of one step, in tokens: "
                             "separate prefill feeds whole prompts up to it (at least one); chunked prefill fills "
                             "what the decodes leave of it with prompt pieces.")
    prefill: Literal["separate", "chunked"] = Field(
        "separate", description="separate: prompts are prefilled in steps of their own, decodes waiting (vLLM's "
        "default); chunked: each step decodes and feeds prompt pieces alongside (Sarathi-Serve).")
    preemption: Literal["none", "recompute"] = Field(
        "none", description="none: a request reserves KV memory for prompt + output when admitted; recompute: it "
        "holds what it uses, and when memory runs out the newest requests are preempted and later prefill "
        "again.")
    draft_payload: Payload = Field("ids", description="What crosses the link per drafted token to a drafter on "
                                   "another device, as for speculative.")

    def lookahead_tokens(self) -> int:
        return self.speculation.gamma if self.draft is not None else 0


Strategy = Annotated[Union[Autoregressive, Speculative, SharedVerifier, Pearl, Federated, Tree, SelfSpeculative,
                           Staged, Pipeline, PipeInfer, Batched], Field(discriminator="kind")]


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
    low: int = Field(ge=1, description="Smallest length, in tokens.")
    high: int = Field(ge=1, description="Largest length, in tokens (inclusive).")

    @model_validator(mode="after")
    def _ordered(self):
        if self.low > self.high:
            raise ValueError("low must be <= high")
        return self


class LogNormal(Strict):
    kind: Literal["lognormal"] = Field(description="Distribution: log-normal, rounded and clipped.")
    median: float = Field(gt=0, description="Median length, in tokens.")
    sigma: NonNeg = Field(description="Standard deviation of the log length.")
    low: int = Field(1, ge=1, description="Lengths are clipped to at least this, in tokens.")
    high: int = Field(32768, ge=1, description="Lengths are clipped to at most this, in tokens.")

    @model_validator(mode="after")
    def _ordered(self):
        if self.low > self.high:
            raise ValueError("low must be <= high")
        return self


class Choice(Strict):
    kind: Literal["choice"] = Field(description="Distribution: one of the values, by weight.")
    values: list[Annotated[int, Field(ge=1)]] = Field(min_length=1, description="Lengths, in tokens.")
    weights: list[NonNeg] | None = Field(None, description="Relative weights of the values (default equal).")

    @model_validator(mode="after")
    def _weights(self):
        if self.weights is not None and (len(self.weights) != len(self.values) or sum(self.weights) <= 0):
            raise _Ref("weights", "weights must match values in length and not all be zero")
        return self


Length = Union[Annotated[int, Field(ge=1)], Annotated[Union[Uniform, LogNormal, Choice], Field(discriminator="kind")]]


class ClosedLoop(Strict):
    """N users, each sending its next request when the previous one finishes (after a think time)."""

    kind: Literal["closed_loop"] = Field(description="Arrival kind: N users in a closed loop.")
    users: int = Field(1, ge=1, description="Concurrent users.")
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
    requests: int | None = Field(None, ge=1, le=10_000_000, description="Number of requests (default: 100; a trace's rows; with "
                                "duration_s, as many as arrive, up to 1,000,000 in a closed loop).")
    duration_s: float | None = Field(None, gt=0, allow_inf_nan=False, description="Stop admitting requests after "
                                     "this simulated time, in s; those admitted still finish.")
    prompt_tokens: Length = Field(128, description="Prompt length, in tokens: a number or a distribution.")
    output_tokens: Length = Field(128, description="Output length, in tokens: a number or a distribution.")


class SloSpec(Strict):
    """A service-level objective: a request meets it when its TTFT <= ttft_ms and its TPOT <= tpot_ms
    (a target left out is not checked; a one-token request has no TPOT and meets that part)."""

    ttft_ms: float | None = Field(None, gt=0, allow_inf_nan=False, description="Target time to first token "
                                  "(first token time - arrival time), in ms.")
    tpot_ms: float | None = Field(None, gt=0, allow_inf_nan=False, description="Target time per output token "
                                  "after the first ((finish - first token) / (output tokens - 1)), in ms.")
    percentile: float = Field(99.0, gt=0, lt=100, allow_inf_nan=False, description="The SLO is met when this "
                              "percentile of TTFT and of TPOT over the requests is within target, in percent.")


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

    @model_validator(mode="after")
    def _references(self):
        places = self.strategy.placements()
        for role, place in places.items():
            if place.model not in self.models:
                raise _Ref(f"strategy.{role}.model", f"unknown model {place.model!r} (known: {', '.join(self.models)})")
            if place.device not in self.devices:
                raise _Ref(f"strategy.{role}.device", f"unknown device {place.device!r} (known: {', '.join(self.devices)})")
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
        self.strategy.check(self)
        return self

    def link_between(self, a: str, b: str) -> LinkSpec | None:
        for link in self.links:
            if {link.a, link.b} == {a, b}:
                return link
        return None


class _Ref(ValueError):
    """A rule that knows its field path, relative to the model that raises it."""

    def __init__(self, field: str, rule: str):
        self.field, self.rule = field, rule
        super().__init__(f"{field}: {rule}")


# ---------------------------------------------------------------- loading


def read_data(path: Path) -> dict:
    """The raw mapping of a YAML, JSON or TOML file; never executes anything."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(path, "", f"cannot read file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise InputError(path, "", "not UTF-8 text") from None
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        elif path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError, tomllib.TOMLDecodeError, RecursionError) as exc:
        raise InputError(path, "", f"not valid {path.suffix.lstrip('.') or 'YAML'}: {_one_line(exc)}") from None
    if not isinstance(data, dict):
        raise InputError(path, "", "the top level must be a mapping of scenario fields")
    return data


def apply_override(data: dict, assignment: str, source: str = "--set") -> None:
    """Apply `dotted.key=value` in place; the value is read as a YAML scalar or flow collection."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise InputError(source, assignment, "expected dotted.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError as exc:
        raise InputError(source, key, f"value is not valid YAML: {_one_line(exc)}") from None
    parts = key.split(".")
    node: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise InputError(source, key, f"{'.'.join(parts[:depth]) or 'top level'} has no item {part}")
            idx: Any = int(part)
        elif isinstance(node, dict):
            idx = part
            if not last and idx not in node:
                node[idx] = {}
        else:
            raise InputError(source, key, f"{'.'.join(parts[:depth])} is not a mapping or list")
        if last:
            node[idx] = value
        else:
            node = node[idx]


def parse(data: dict, source: str | Path, base_dir: Path | None = None) -> Scenario:
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise _input_error(exc, data, source) from None
    return _resolve_paths(scenario, base_dir or Path("."), source)


def load(path: str | Path, overrides: list[str] = ()) -> Scenario:
    path = Path(path)
    data = read_data(path)
    for assignment in overrides:
        apply_override(data, assignment)
    return parse(data, path, path.parent)


def _resolve_paths(scenario: Scenario, base: Path, source) -> Scenario:
    updates = {}
    for field in ("acceptance",):
        spec = getattr(scenario, field)
        if isinstance(spec, TraceAcceptance) and spec.path is not None:
            updates[field] = spec.model_copy(update={"path": _trace_file(base, spec.path, f"{field}.path", source)})
    arrival = scenario.workload.arrival
    if isinstance(arrival, TraceArrivals):
        arrival = arrival.model_copy(update={"path": _trace_file(base, arrival.path, "workload.arrival.path", source)})
        updates["workload"] = scenario.workload.model_copy(update={"arrival": arrival})
    for key, dev in scenario.devices.items():
        if isinstance(dev.profile, str) and (base / dev.profile).is_dir():
            updates.setdefault("devices", dict(scenario.devices))[key] = dev.model_copy(
                update={"profile": str((base / dev.profile).resolve())})
    return scenario.model_copy(update=updates) if updates else scenario


def _trace_file(base: Path, path: str, field: str, source) -> str:
    resolved = (base / path).resolve()
    if not resolved.is_file():
        raise InputError(source, field, f"file not found: {resolved}")
    return str(resolved)


def _input_error(exc: ValidationError, data: dict, source) -> InputError:
    errors = exc.errors()
    first = _field_path(errors[0]["loc"], data, errors[0]["type"]).split(".")

    def rank(e: dict) -> tuple:
        # Of the first field's errors, the union branch that got furthest into the input.
        parts = _field_path(e["loc"], data, e["type"]).split(".")
        return (parts[: len(first)] == first, len(parts), len(e["loc"]), not e["type"].endswith("_type"))

    err = max(errors, key=rank)
    loc = _field_path(err["loc"], data, err["type"])
    ctx = err.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, _Ref):
        return InputError(source, cause.field if loc == "top level" else f"{loc}.{cause.field}", cause.rule)
    msg = str(cause) if isinstance(cause, ValueError) else err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required field is missing"
    paths = {tuple(_field_path(e["loc"], data, e["type"]).split(".")) for e in errors}
    shown = tuple(loc.split("."))
    more = sum(1 for p in paths if p != shown[: len(p)])  # not this field or the union holding it
    if more > 0:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return InputError(source, loc, msg)


def _field_path(loc: tuple, data: Any, error_type: str) -> str:
    """The path the user wrote, without pydantic's union-branch labels."""
    parts, node = [], data
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            parts.append(str(part))
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            parts.append(str(part))
            node = node[part]
        elif i == len(loc) - 1 and isinstance(node, dict) and error_type == "missing":
            parts.append(str(part))  # a missing key at the end of the path
            node = None
    return ".".join(parts) or "top level"


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
