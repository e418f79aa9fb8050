"""Token-tree speculation (SpecInfer, Medusa, Sequoia): draft a tree, verify every node at once.

Shape. `branching` = [b_1, ..., b_D]: every node at depth i - 1 has b_i children at depth i, so
depth i holds n_i = b_1 ... b_i nodes (n_0 = 1: the newest committed token) and the tree
N = n_1 + ... + n_D nodes. Near the end of an output only the first g = min(D, left - 1)
levels are drafted (a step always commits one token of the target's own), as speculative does.

Cost of a step with g levels, at committed context c:

- draft: one job of g forwards, level i feeding the n_(i-1) nodes of the level above at
  context c + n_0 + ... + n_(i-2) (the tree grows in the draft's KV cache): query 1 at c for
  level 1, query n_1 at c + 1 for level 2, ...; a chain ([1] * g) is exactly speculative's g
  forwards of one token at c, ..., c + g - 1;
- if split: the N_g = n_1 + ... + n_g node tokens cross to the target (N_g x the per-token
  payload; the tree's topology is fixed by `branching`, so nothing else);
- verify: one target forward of 1 + N_g tokens at context c (tree attention), + step_ms;
- if split: the result (accepted count and the target's token) crosses back.

Acceptance. From the scenario's acceptance model, with S(j) = P(K >= j) its survival for a
chain of g, the conditional acceptance at depth i is alpha_i = S(i) / S(i - 1). The b_i children
at depth i of the node on the accepted path are the draft's top-b_i tokens there. Let R be the
rank, in the draft's order, of the target's token (R = 1 is the draft's own choice, which the
target takes with probability alpha_i, as in a chain). The ranks' shares decay geometrically:

    P(R = j) = alpha_i r_i^(j - 1),  j = 1, 2, ...,   r_i = min(d, 1 - alpha_i),  d = `top_k_decay`.

The target picks one token, so the ranks are exclusive and their shares must sum to at most 1:
sum over j of alpha_i r_i^(j - 1) = alpha_i / (1 - r_i) = c_i <= 1 holds exactly when
r_i <= 1 - alpha_i, hence the cap on the ratio (below the cap it is d itself; at the cap c_i = 1,
the target's token always has some rank, and P(R = j) = alpha_i (1 - alpha_i)^(j - 1) is the
chance that j - 1 independent alpha_i-candidates miss and the j-th hits). c_i is the chance the
token is among the draft's ranks at all, and given that, R is geometric, so the path continues
(some child matches) with

    p_i = P(R <= b_i) = alpha_i (1 + r_i + ... + r_i^(b_i - 1)) = c_i (1 - r_i^(b_i)).

p_i is a probability for every alpha_i in [0, 1] and d in (0, 1]; p_i = alpha_i for b_i = 1;
p_i < 1 whenever alpha_i < 1 (then r_i > 0 and c_i <= 1); p_i grows with b_i, d and alpha_i.
Where d <= 1 - alpha_i this is the old rule alpha_i (1 + d + ... + d^(b_i - 1)) unchanged; above
it the old rule's shares summed past 1 and it clipped at min(1, ...), accepting a level surely.

The accepted length K is the number of leading depths that continue: P(K >= i) = p_1 ... p_i;
the step commits K + 1 tokens, E[K] + 1 = 1 + sum over i of p_1 ... p_i. K is drawn by
`acceptance.Acceptance` from that survival with the Generator of the scenario's acceptance
model; a tree of width 1 uses the scenario's acceptance model itself (p_i = alpha_i), so it
draws exactly what speculative decoding with gamma = D draws. `drafted` in the records counts
tree nodes, so the acceptance rate is accepted / nodes.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from .. import acceptance
from ..closed_form import Closed
from ..fields import Payload, Ref, Strict
from .base import Placement, StrategySpec
from .speculative import SpeculativeProcess

MAX_TREE_NODES = 4096
Branching = Annotated[list[Annotated[int, Field(ge=1, le=64)]], Field(max_length=64)]
SIZE_RULE = "the tree has at most 4096 nodes (the sum over depths of the products of `branching`)"


def tree_levels(branching: list[int]) -> list[int]:
    """Nodes at depth 0 (the newest committed token), 1, ..., len(branching) of a token tree."""
    levels = [1]
    for b in branching:
        levels.append(levels[-1] * b)
    return levels


def check_size(branching) -> None:
    """SIZE_RULE, as an input error naming `branching`."""
    nodes = sum(tree_levels(list(branching))[1:])
    if nodes > MAX_TREE_NODES:
        raise Ref("branching", f"the tree has {nodes} nodes; at most {MAX_TREE_NODES}")


class TreeShape(StrategySpec):
    """Fields and rules shared by the token-tree strategies."""

    branching: Branching = Field(
        [3, 2, 1], description="Children per node at each depth (depth = its length; [1] * g is a chain "
        "of g drafts, as speculative with gamma g), in tokens. At most 4096 nodes in all.")
    top_k_decay: float = Field(
        0.5, gt=0, le=1, allow_inf_nan=False, description="d (unitless): the rank-j child of a node "
        "(j = 1, 2, ...) matches the target's token with probability alpha_i x r^(j - 1), r = min(d, 1 - alpha_i), "
        "alpha_i the acceptance model's conditional acceptance at that depth (the cap keeps the ranks' "
        "shares summing to at most 1; d = 1 makes each child an independent alpha_i chance). Changed: the ratio "
        "used to be d uncapped, clipping a depth's acceptance at min(1, ...); the same where d <= 1 - alpha_i.")
    draft_payload: Payload = Field("ids", description="What crosses the link per tree node, as for speculative.")

    @model_validator(mode="after")
    def _size(self):
        check_size(self.branching)
        return self

    def lookahead_tokens(self) -> int:
        return sum(tree_levels(self.branching)[1:])

    def check(self, scenario) -> None:
        if scenario.acceptance.kind == "trace" and (max(self.branching, default=1) > 1 or self.kind != "tree"):
            raise Ref("acceptance.kind", f"trace acceptance replays chain counts; strategy {self.kind} "
                      "with this branching needs iid, per_position or empirical acceptance")

    def draft_prefill_s(self, f) -> float:
        return f.forward(self.draft).prefill_s(1, f.prompt, 0) if self.branching else 0.0

    def draft_phase_s(self, f, levels: list[int]) -> float:
        """Expected draft seconds of a full step: one draft forward per depth level."""
        d_fwd = f.forward(self.draft)
        return sum(d_fwd.forward_s(1, levels[i - 1], f.ctx) for i in range(1, len(self.branching) + 1))

    def estimate(self, f) -> Closed:
        """step_s = the draft phase + t_target(1 + N) + link time; tokens_per_step = 1 + sum over
        depths i of p_1 ... p_i (above)."""
        levels = tree_levels(self.branching)
        nodes = sum(levels[1:])
        d_dev, t_dev, t_fwd = self.draft.device, self.target.device, f.forward(self.target)
        e_tokens = mean_tokens_per_step(f.world.acceptance, list(self.branching), self.top_k_decay)
        n_steps = (f.output - 1) / e_tokens
        d_prefill, draft_phase = self.draft_prefill_s(f), self.draft_phase_s(f, levels)
        t_verify = t_fwd.forward_s(1, 1 + nodes, f.ctx) + t_fwd.step_s
        f.add(d_dev, d_prefill + n_steps * draft_phase)
        f.add(t_dev, t_fwd.prefill_s(1, f.prompt, 0) + n_steps * t_verify)
        ttft, step = d_prefill + t_fwd.prefill_s(1, f.prompt, 0), draft_phase + t_verify
        link = f.link(d_dev, t_dev)
        if link is not None:
            first, per_step = f.round_trip(link, d_dev, t_dev,
                                           nodes * f.per_token_bytes(self.draft_payload, self.draft.model), n_steps)
            ttft += first
            step += per_step
        return Closed(ttft, step / e_tokens, {"tokens_per_step": e_tokens, "step_s": step,
                                              "speedup_vs_autoregressive": (e_tokens / step) * f.ar_token_s
                                              if step else None})


class TreeOption(Strict):
    """An optional token tree per drafting step instead of a chain (the pipelines, a batch's
    speculation): `branching` as for the tree strategy, `gamma` then the tree's depth (default: all
    of it). A model with a `draft` field needs one for a tree."""

    branching: Branching | None = Field(None, description="A token tree per drafting step instead of a "
                                        "chain: children per node at each depth, as for the tree strategy; gamma "
                                        "is then the tree's depth (default: len(branching); at most that), in "
                                        "levels. At most 4096 nodes.")
    top_k_decay: float = Field(0.5, gt=0, le=1, allow_inf_nan=False, description="With branching: d, how fast "
                               "the draft's lower-ranked children match, as for the tree strategy (unitless).")

    @model_validator(mode="before")
    @classmethod
    def _tree_depth(cls, data):
        """With a tree and no gamma, the whole tree."""
        if isinstance(data, dict) and isinstance(data.get("branching"), list) and "gamma" not in data:
            return {**data, "gamma": len(data["branching"])}
        return data

    @model_validator(mode="after")
    def _tree(self):
        b = self.branching
        if b is None:
            return self
        if "draft" in type(self).model_fields and getattr(self, "draft") is None:
            raise Ref("branching", "a token tree needs a draft to grow it")
        if self.gamma > len(b):
            raise Ref("gamma", f"a tree of {len(b)} levels (branching) cannot be drafted {self.gamma} deep")
        check_size(b)
        return self

    def tree(self) -> list[int] | None:
        """The drafted tree's branching, its first gamma levels (None: a chain)."""
        return None if self.branching is None else list(self.branching[:self.gamma])

    def step_nodes(self) -> int:
        """Tokens a full drafting step feeds the target: gamma for a chain, the tree's nodes."""
        b = self.tree()
        return self.gamma if b is None else sum(tree_levels(b)[1:])

    def check_tree(self, scenario) -> None:
        b = self.tree()
        if b is not None and max(b, default=1) > 1 and scenario.acceptance.kind == "trace":
            raise Ref("acceptance.kind", "trace acceptance replays chain counts; a token tree needs iid, "
                      "per_position or empirical acceptance")


class TreeDrafts:
    """What a drafting step of a tree (or, branching None, of a chain) costs and accepts: the nodes of
    each depth, the draft job of g levels, the accepted-count model (tree_acceptance)."""

    def __init__(self, branching: list[int] | None, depth: int, accept, decay: float):
        self.branching = branching
        self.levels = tree_levels(branching) if branching is not None else [1] * (depth + 1)
        self.sent = [0] + np.cumsum(self.levels[1:]).tolist()  # tokens fed for g levels
        self.offsets = np.cumsum([0] + self.levels).tolist()  # level j feeds at context + offsets[j - 1]
        self.acceptance = accept if branching is None else tree_acceptance(accept, branching, decay)

    def draft_s(self, fwd, g: int, context: int) -> float:
        total = 0.0
        for q, ctx, n in draft_forwards(self.levels, g, context):
            total += fwd.consecutive_s(1, q, ctx, n)
        return total


class Tree(TreeShape):
    """Token-tree speculation (SpecInfer, Medusa, Sequoia): the draft grows a tree one depth level per
    forward, the target verifies every node in one forward; see simulator/strategies/tree.py."""

    rules: ClassVar[str] = SIZE_RULE + "; a branching above 1 refuses `trace` acceptance."
    kind: Literal["tree"] = Field(description="Strategy kind: draft a token tree, verify it at once.")
    draft: Placement = Field(description="Where the draft model runs (and where the user is).")
    target: Placement = Field(description="Where the target model runs.")

    def build(self, world):
        return TreeProcess(self, world)


def rank_ratio(alphas, decay: float) -> np.ndarray:
    """r_i = min(d, 1 - alpha_i): the ratio of successive ranks' shares at each depth, capped so that
    the shares alpha_i r_i^(j - 1), j = 1, 2, ..., sum to at most 1."""
    return np.minimum(decay, 1.0 - np.asarray(alphas, dtype=float))


def continue_probabilities(alphas, branching, decay: float) -> np.ndarray:
    """p_i = P(the target's token is among the draft's top b_i) = c_i (1 - r_i^(b_i)) for each depth i,
    c_i = alpha_i / (1 - r_i) = alpha_i / max(1 - d, alpha_i) <= 1 (module docstring); alpha_i at b_i = 1."""
    a = np.asarray(alphas, dtype=float)
    b = np.asarray(branching, dtype=float)
    r = rank_ratio(a, decay)
    room = np.maximum(1.0 - decay, a)  # 1 - r_i; 0 only where alpha_i = 0 and d = 1
    c = np.divide(a, room, out=np.zeros_like(a), where=room > 0)  # a <= room, so c <= 1 in floats too
    return np.where(b == 1, a, c * (1.0 - r ** b))


def tree_survival(chain_survival, branching, decay: float) -> np.ndarray:
    """P(K >= i), i = 0..len(branching), of a tree, from the chain's P(K >= i) of the same depth."""
    p = continue_probabilities(acceptance.conditional(chain_survival), branching, decay)
    return np.cumprod(np.concatenate([[1.0], p]))


def tree_acceptance(acceptance, branching, decay: float):
    """The accepted-count model of a tree: the chain's own for width 1, else drawn from
    `tree_survival` with the chain model's Generator."""
    if all(b == 1 for b in branching):
        return acceptance
    return acceptance.with_survival(lambda g: tree_survival(acceptance.survival(g), branching[:g], decay))


def mean_tokens_per_step(acceptance, branching, decay: float) -> float:
    """E[K] + 1 of a full tree."""
    return tree_acceptance(acceptance, branching, decay).mean_accepted(len(branching)) + 1.0


def draft_forwards(levels: list[int], g: int, context: int) -> list[tuple[int, int, int]]:
    """The draft forwards of levels 1..g as (query, first context, count) runs of consecutive
    forwards with one query size at consecutive contexts (ForwardTime.consecutive_s's shape)."""
    runs: list[list[int]] = []
    ctx = context
    for i in range(1, g + 1):
        q = levels[i - 1]
        if runs and runs[-1][0] == q and runs[-1][1] + runs[-1][2] == ctx:
            runs[-1][2] += 1
        else:
            runs.append([q, ctx, 1])
        ctx += q
    return [tuple(r) for r in runs]


class TreeProcess(SpeculativeProcess):
    def __init__(self, spec, world):
        self.place(spec, world)
        self.tree = TreeDrafts(list(spec.branching), len(spec.branching), world.acceptance, spec.top_k_decay)
        self.levels, self.depth, self.sent = self.tree.levels, len(spec.branching), self.tree.sent
        self.acceptance = self.tree.acceptance

    def draft_s(self, fwd, g: int, context: int) -> float:
        """The draft job of a step with g levels."""
        return self.tree.draft_s(fwd, g, context)
