"""Pipeline-parallel decoding and PipeInfer-style asynchronous pipelined speculation.

The target is split by layers into stages, stage i on device stages[i] running layers[i] of its L
decoder blocks. A stage's forward time is the target's forward time on that device x layers[i] / L
(profiles.stage_share: per-forward overhead scaled too, the per-step overhead paid once, by the last
stage). Between consecutive stages on different devices the activations cross the link:
tokens x hidden x dtype bytes (payloads.hidden_states). Each stage is its device's FCFS server, so
several requests (or micro-batches) in the pipeline overlap on different stages.

`pipeline` (kind "pipeline"). Without a draft, the user is at the first stage and decoding is
autoregressive: the prefill traverses every stage, then each token traverses every stage (query 1)
and the new token id (4 B) returns from the last stage to the first. One stage is exactly
`autoregressive`. With a draft (the user at the draft's device) it is speculative decoding over the
pipeline, as `speculative` step by step: draft g tokens, send them to the first stage, verify g + 1
tokens through every stage, return the result (8 B) to the drafter, commit k + 1. One stage is
exactly `speculative`. This is the synchronous baseline PipeInfer is compared with.

`pipeinfer` (strategies/pipeinfer.py) is the asynchronous variant over the same stages. Both may
draft a token tree per step (`branching`, strategies/tree.py): every node is verified through the
stages in one pass. A stage device with several GPUs (`gpus`, `interconnect`) runs its share of the
layers tensor-parallel over them (tensor_parallel.py), the all-reduces scaled with the layers.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from .. import payloads
from ..catalog import split_layers
from ..closed_form import Closed
from ..fields import Payload, Ref
from ..profiles import stage_share
from .base import Placed, Placement, Role, StrategySpec
from .speculative import RESULT_BYTES, TOKEN_ID_BYTES, Lane, SpeculativeProcess, draft_token_bytes
from .tree import TreeOption, TreeDrafts, mean_tokens_per_step


class PipelineStages(StrategySpec, TreeOption):
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
    rules: ClassVar[str] = ("`layers`, if given, has one entry per stage and sums to the target's layers; "
                            "without it, at most one stage per layer; `branching` needs a draft, `gamma` (default "
                            "its length) is at most its length, the tree has at most 4096 nodes, and a branching "
                            "above 1 refuses `trace` acceptance.")

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

    def reference_target(self) -> Placed:
        """The whole target on the first stage's device."""
        return self.placements()["stages.0"]

    def stage_layers(self, total: int) -> list[int]:
        """Layers per stage: `layers`, or an even split of the target's `total`."""
        if self.layers is not None:
            return list(self.layers)
        return split_layers(total, len(self.stages))

    def lookahead_tokens(self) -> int:
        return self.step_nodes()

    def describe(self) -> str:
        line = super().describe()
        tree = self.tree()
        return line if tree is None else line.replace(f", gamma {self.gamma}:", f", tree {tree}:", 1)

    def check(self, scenario) -> None:
        self.check_tree(scenario)
        if self.model not in scenario.models:
            return  # reported by the reference check
        total = scenario.models[self.model].architecture().layers
        if self.layers is None and len(self.stages) > total:
            raise Ref("strategy.stages", f"{len(self.stages)} stages for a model of {total} layers; at most one "
                      "stage per layer")
        if self.layers is not None and (len(self.layers) != len(self.stages) or sum(self.layers) != total):
            raise Ref("strategy.layers", f"needs one entry per stage ({len(self.stages)}) summing to the "
                      f"target's layers ({total}); got {len(self.layers)} summing to {sum(self.layers)}")

    def estimate(self, f) -> Closed:
        return pipeline_estimate(f, self)


class Pipeline(PipelineStages):
    """Pipeline-parallel decoding: every token traverses the target's stages in turn (autoregressive);
    with a `draft`, speculative decoding over the pipeline, one drafted micro-batch at a time."""

    kind: Literal["pipeline"] = Field(description="Strategy kind: the target split by layers over devices.")
    draft: Placement | None = Field(None, description="Optional drafter (the user is then at its device): "
                                    "draft gamma tokens, verify them through the pipeline, then the next "
                                    "(synchronous speculative decoding over the pipeline). Without it the user "
                                    "is at the first stage and decoding is autoregressive.")
    gamma: int = Field(4, ge=0, le=64, description="Tokens drafted per step (with a draft), in tokens.")

    def build(self, world):
        return (PipelineProcess if self.tree() is None else TreePipelineProcess)(self, world)


# ---------------------------------------------------------------- the stages


class Stages:
    """The target's pipeline: per stage its device server and stage ForwardTime, the links between
    consecutive stages, the link from the head to the first stage and from the last back to the head."""

    def __init__(self, spec, world):
        arch = world.scenario.models[spec.model].architecture()
        self.devices = [world.devices[d] for d in spec.stages]
        self.layers = spec.stage_layers(arch.layers)
        self.forward = [stage_share(dev.forward[spec.model], n, arch.layers) for dev, n in zip(self.devices, self.layers)]
        self.hops = [world.link(a, b) if a != b else None for a, b in zip(spec.stages, spec.stages[1:])]
        self.head = spec.draft.device if spec.draft is not None else spec.stages[0]
        self.first, self.last = spec.stages[0], spec.stages[-1]
        self.up = world.link(self.head, self.first) if self.head != self.first else None
        self.back = world.link(self.last, self.head) if self.last != self.head else None
        self.hidden, self.dtype_bytes = arch.hidden, arch.dtype_bytes

    def activation_bytes(self, tokens: int) -> int:
        return payloads.hidden_states(tokens, self.hidden, self.dtype_bytes)

    def seconds(self, i: int, query: int, context: int, prefill: bool = False) -> float:
        """Stage i's job: one forward of its layers; the last stage of a decoding step adds the step overhead."""
        fwd = self.forward[i]
        if prefill:
            return fwd.prefill_s(1, query, context)
        return fwd.forward_s(1, query, context) + (fwd.step_s if i == len(self.forward) - 1 else 0.0)

    def traverse(self, query: int, context: int, label: str, prefill: bool = False):
        """One forward through every stage in turn, activations crossing each hop."""
        for i, dev in enumerate(self.devices):
            yield from dev.server.serve(self.seconds(i, query, context, prefill), label)
            if i < len(self.hops) and self.hops[i] is not None:
                yield from self.hops[i].send(dev.name, self.activation_bytes(query))


# ---------------------------------------------------------------- pipeline (synchronous)


class PipelineProcess(SpeculativeProcess):
    """Speculative's step with the verifier's jobs traversing the stages, drafts going up to the first
    stage and results coming back from the last; without a draft, gamma 0 (autoregressive)."""

    def __init__(self, spec, world):
        self.env, self.steps, self.acceptance = world.env, world.steps, world.acceptance
        self.stages = st = Stages(spec, world)
        self.depth = spec.gamma if spec.draft is not None else 0
        self.tree = TreeDrafts(spec.tree(), self.depth, world.acceptance, spec.top_k_decay)
        self.sent, self.acceptance = self.tree.sent, self.tree.acceptance  # a chain's g, or a tree's nodes
        self.result_bytes = RESULT_BYTES if spec.draft is not None else TOKEN_ID_BYTES  # with a draft: as speculative
        self.label = "verify" if spec.draft is not None else "decode"
        d_server = d_fwd = None
        if spec.draft is not None:
            d = world.devices[spec.draft.device]
            d_server, d_fwd = d.server, d.forward[spec.draft.model]
            self.per_token_bytes = draft_token_bytes(world, spec.draft_payload, spec.draft.model)
        self._lane = Lane(d_server, d_fwd, st.up, st.head, st.back, st.last)

    def target_prefill(self, prompt: int):
        return self.stages.traverse(prompt, 0, "prefill", prefill=True)

    def target_verify(self, r, g: int, n: int, context: int):
        return self.stages.traverse(n + 1, context, self.label)


class TreePipelineProcess(PipelineProcess):
    """The synchronous pipeline with a token tree per step: the draft grows g levels, every node is
    verified through the stages in one pass (activations of 1 + nodes tokens at each hop)."""

    def draft_s(self, fwd, g: int, context: int) -> float:
        return self.tree.draft_s(fwd, g, context)


def pipeline_estimate(f, spec) -> Closed:
    """Per step: g t_draft + the g drafts' ids up to the first stage + sum over stages of
    t_stage_i(g + 1) (the target's time on stage i's device x its layer share) + the per-step
    overhead + one activation hop of g + 1 tokens per link between stages + the result's hop back
    to the head; tokens per step E[accepted] + 1 (g = 0 without a draft: autoregressive, sum of
    stage times + (stages - 1) hops + the return hop). PipeInfer is estimated as this synchronous
    pipeline with its draft (an approximate upper bound on its time)."""
    st, draft, p = Stages(spec, f.world), spec.draft, f.prompt
    g = spec.gamma if draft is not None else 0
    tree = spec.tree() if g else None  # a tree: its nodes fed, one draft forward per level, its acceptance
    result = RESULT_BYTES if spec.kind == "pipeline" and draft is not None else TOKEN_ID_BYTES
    if tree is None:
        e_tokens = f.world.acceptance.mean_accepted(g) + 1 if g else 1.0
    else:
        e_tokens = mean_tokens_per_step(f.world.acceptance, tree, spec.top_k_decay)
    fed = spec.step_nodes() if g else 0
    n_steps = (f.output - 1) / e_tokens
    ttft = step = 0.0
    if g:
        d_fwd = f.forward(draft)
        ttft += f.add(draft.device, d_fwd.prefill_s(1, p, 0))
        t_drafts = TreeDrafts(tree, g, f.world.acceptance, spec.top_k_decay).draft_s(d_fwd, g, f.ctx) if tree \
            else g * d_fwd.forward_s(1, 1, f.ctx)
        f.add(draft.device, n_steps * t_drafts)
        step += t_drafts
    per_tok = f.per_token_bytes(spec.draft_payload, draft.model) if draft is not None else 0

    def hop(link, src: str, nbytes: int, times: float) -> float:
        wire = link.mean_wire_s(nbytes, src)
        f.add(f"{link.name}:{link.direction(src)}", wire * times)
        return wire + link.mean_flight_s()

    if st.up is not None:
        ttft += hop(st.up, st.head, p * TOKEN_ID_BYTES, 1)
        step += hop(st.up, st.head, fed * per_tok, n_steps)
    for i, dev in enumerate(st.devices):
        t_pre, t_step = st.seconds(i, p, 0, prefill=True), st.seconds(i, fed + 1, f.ctx)
        f.add(dev.name, t_pre + n_steps * t_step)
        ttft, step = ttft + t_pre, step + t_step
        if i < len(st.hops) and st.hops[i] is not None:
            ttft += hop(st.hops[i], dev.name, st.activation_bytes(p), 1)
            step += hop(st.hops[i], dev.name, st.activation_bytes(fed + 1), n_steps)
    if st.back is not None:
        ttft += hop(st.back, st.last, result, 1)
        step += hop(st.back, st.last, result, n_steps)
    return Closed(ttft, step / e_tokens, {"tokens_per_step": e_tokens, "step_s": step})
