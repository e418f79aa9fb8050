"""Dynamic token trees (EAGLE-2, Li et al. 2024): the draft grows each step's tree from its own
confidence, and a drafter that stops when its confidence drops.

Confidence. Every node the draft expands gets a confidence q for its top child: the draft's
probability of that token, drawn per node from Beta(kappa alpha_i, kappa (1 - alpha_i)) at depth i
(alpha_i: the acceptance model's conditional acceptance there, strategies/tree.py; kappa =
`confidence`, how spread the draft's confidence is; none: q = alpha_i always). Its children of
rank j = 1..top_k have probabilities q r^(j - 1), r = min(d, 1 - q) (the tree strategy's rank
model with alpha_i replaced by this node's q), and the draft is calibrated: the target's token is
child j with exactly that probability (at most one child, the ranks being exclusive). So the
acceptance model gives the confidence signal consistently: a chain's token at depth i is
accepted with probability E[q] = alpha_i, as in the chain model itself.

A step (`grow`, no SimPy), as EAGLE-2 does it:
1. expansion, depth by depth up to `depth` levels: the `top_k` frontier nodes of the highest
   score (the product of probabilities along the path from the root) are fed to the draft in one
   forward (query: how many were expanded, at the context plus the tokens drafted before), and
   each gets its top_k children; with `stop_below`, the draft stops before a level whose best
   frontier score is below it (confidence-based stopping; top_k 1 makes it a chain drafter
   that stops when its confidence drops);
2. reranking: the `nodes` nodes of the highest score are verified in one target forward of
   1 + m tokens (a child's score never exceeds its parent's, so they form a tree);
3. the target walks the tree from the root, taking child j with its probability; the step
   accepts the length of the walk within the verified nodes and commits it + 1 token.

A full-width case is the static tree: with kappa none, top_k b, depth 2 and nodes b + b^2, every
node is expanded and verified, and the accepted length is drawn as for branching [b, b]
(tests/test_dynamic_tree.py). The closed form is the mean of `grow` over ESTIMATE_DRAWS steps
(seeded, so the same every time).
"""

from __future__ import annotations

import heapq
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from .. import acceptance as acc
from ..closed_form import Closed
from ..fields import Payload, Ref
from .base import Placement, StrategySpec
from .speculative import SpeculativeProcess, prelude

ESTIMATE_DRAWS = 2000


class DynamicTree(StrategySpec):
    """Dynamic token trees (EAGLE-2): the draft grows each step's tree by confidence and the best
    `nodes` are verified; see simulator/strategies/dynamic_tree.py."""

    rules: ClassVar[str] = "`nodes` is at most what `depth` levels of `top_k` expansions make; refuses `trace` " \
                           "acceptance."
    kind: Literal["dynamic_tree"] = Field(description="Strategy kind: a tree grown per step from the draft's "
                                          "confidence (EAGLE-2).")
    draft: Placement = Field(description="Where the draft model runs (and where the user is).")
    target: Placement = Field(description="Where the target model runs.")
    depth: int = Field(6, ge=1, le=32, description="Most levels the draft grows a step, in draft forwards.")
    top_k: int = Field(4, ge=1, le=16, description="Frontier nodes expanded a level, and children of each, "
                       "in nodes.")
    nodes: int = Field(32, ge=1, le=1024, description="Drafted tokens verified a step: the highest-scoring "
                       "nodes of the tree grown, in tokens.")
    confidence: float | None = Field(2.0, gt=0, allow_inf_nan=False, description="kappa (unitless): the draft's "
                                     "confidence in its top token at depth i is Beta(kappa alpha_i, "
                                     "kappa (1 - alpha_i)), mean alpha_i; small: widely spread, large: nearly "
                                     "alpha_i always; none: exactly alpha_i.")
    top_k_decay: float = Field(0.5, gt=0, le=1, allow_inf_nan=False, description="d (unitless): the rank-j child "
                               "of a node of confidence q has probability q r^(j - 1), r = min(d, 1 - q).")
    stop_below: float = Field(0.0, ge=0, lt=1, allow_inf_nan=False, description="Stop growing before a level "
                              "whose best frontier score (product of probabilities from the root) is below this "
                              "(unitless); 0: always grow `depth` levels.")
    draft_payload: Payload = Field("ids", description="What crosses the link per verified node, as for "
                                   "speculative.")

    def lookahead_tokens(self) -> int:
        return self.nodes + self.depth * self.top_k  # the verified nodes, and the draft's own tree

    def check(self, scenario) -> None:
        grown = self.top_k + (self.depth - 1) * self.top_k ** 2
        if self.nodes > grown:
            raise Ref("strategy.nodes", f"{self.depth} levels of {self.top_k} expansions grow at most {grown} nodes; "
                      f"nodes is {self.nodes}")
        if scenario.acceptance.kind == "trace":
            raise Ref("acceptance.kind", "trace acceptance replays chain counts; a dynamic tree needs iid, "
                      "per_position or empirical acceptance")

    def build(self, world):
        return DynamicTreeProcess(self, world)

    def estimate(self, f) -> Closed:
        """The mean step of ESTIMATE_DRAWS seeded `grow`s at the mean context: draft forwards per level
        as grown, a verification of 1 + m tokens, the link's round trip."""
        d_fwd, t_fwd = f.forward(self.draft), f.forward(self.target)
        alphas = depth_alphas(f.world.acceptance, self.depth)
        rng = np.random.default_rng(0)
        draft = verify = nodes = tokens = 0.0
        for _ in range(ESTIMATE_DRAWS):
            queries, m, k = grow(rng, alphas, self, self.depth)
            draft += draft_s(d_fwd, queries, f.ctx)
            verify += t_fwd.forward_s(1, m + 1, f.ctx)
            nodes, tokens = nodes + m, tokens + k + 1
        n = ESTIMATE_DRAWS
        draft, verify, nodes, e_tokens = draft / n, verify / n + t_fwd.step_s, nodes / n, tokens / n
        steps = (f.output - 1) / e_tokens
        d_prefill, t_prefill = d_fwd.prefill_s(1, f.prompt, 0), t_fwd.prefill_s(1, f.prompt, 0)
        f.add(self.draft.device, d_prefill + steps * draft)
        f.add(self.target.device, t_prefill + steps * verify)
        ttft, step = d_prefill + t_prefill, draft + verify
        link = f.link(self.draft.device, self.target.device)
        if link is not None:
            first, per_step = f.round_trip(link, self.draft.device, self.target.device,
                                           round(nodes * f.per_token_bytes(self.draft_payload, self.draft.model)), steps)
            ttft, step = ttft + first, step + per_step
        return Closed(ttft, step / e_tokens, {"tokens_per_step": e_tokens, "step_s": step, "nodes_per_step": nodes,
                                              "speedup_vs_autoregressive": e_tokens / step * f.ar_token_s})

    def describe(self) -> str:
        return (f"dynamic_tree (depth {self.depth}, top-{self.top_k}, {self.nodes} nodes): {self.draft.model} on "
                f"{self.draft.device}, {self.target.model} on {self.target.device}")


# ---------------------------------------------------------------- a step's tree (no SimPy)


def depth_alphas(acceptance, depth: int) -> np.ndarray:
    """alpha_i, i = 1..depth: the acceptance model's conditional acceptance at each depth."""
    return acc.conditional(acceptance.survival(depth))


def grow(rng: np.random.Generator, alphas, spec, levels: int) -> tuple[list[int], int, int]:
    """One step's tree of at most `levels` levels: (nodes fed to the draft at each level, nodes
    verified, accepted length). Nodes are kept as parallel lists: parent, probability, score."""
    kappa, k, decay = spec.confidence, spec.top_k, spec.top_k_decay
    prob, score, kids = [1.0], [1.0], [[]]
    frontier, queries = [0], []
    for i in range(levels):
        if i and max(score[n] for n in frontier) < spec.stop_below:
            break
        expand = heapq.nlargest(k, frontier, key=score.__getitem__)
        queries.append(len(expand))
        a = float(alphas[i])
        shape = (kappa * a, kappa * (1.0 - a)) if kappa is not None else (0.0, 0.0)
        if min(shape) <= 0.0:  # no spread, or alpha_i at (or a float's width from) 0 or 1: q = alpha_i
            tops = [a] * len(expand)
        else:
            tops = rng.beta(*shape, len(expand)).tolist()
        frontier = []
        for node, q in zip(expand, tops):
            r, s = min(decay, 1.0 - q), score[node]
            p = q
            for _ in range(k):
                kids[node].append(len(prob))
                frontier.append(len(prob))
                prob.append(p)
                score.append(s * p)
                kids.append([])
                p *= r
    verified = set(heapq.nlargest(spec.nodes, range(1, len(prob)), key=score.__getitem__))
    node, accepted = 0, 0
    while kids[node]:
        u, pick = rng.random(), None
        for child in kids[node]:
            u -= prob[child]
            if u < 0:
                pick = child
                break
        if pick is None or pick not in verified:
            break
        accepted, node = accepted + 1, pick
    return queries, len(verified), accepted


def draft_s(fwd, queries: list[int], context: int) -> float:
    """The draft job: level i feeds queries[i] nodes at the context plus the nodes fed before."""
    total, ctx = 0.0, context
    for q in queries:
        total += fwd.forward_s(1, q, ctx)
        ctx += q
    return total


class DynamicTreeProcess(SpeculativeProcess):
    def __init__(self, spec, world):
        self.place(spec, world)
        self.spec, self.depth = spec, spec.depth
        self.alphas = depth_alphas(world.acceptance, spec.depth)
        self.rng = world.acceptance.child_rng()  # the trees' own draws, from the acceptance stream's seed

    def serve(self, r):
        env, lane, steps = self.env, self.lane(r), self.steps
        d_server, d_fwd, up, up_from, down, down_from = lane
        t_server, t_fwd = self.t_server, self.t_fwd
        yield from prelude(r, lane, True, self.target_prefill, self.result_bytes)
        r.first_token_s = env.now
        done, context = 1, r.prompt_tokens
        while done < r.output_tokens:
            start, left = env.now, r.output_tokens - done
            levels = min(self.depth, left - 1)
            queries, m, k = grow(self.rng, self.alphas, self.spec, levels) if levels else ([], 0, 0)
            if queries:
                yield from d_server.serve(draft_s(d_fwd, queries, context), "draft")
            if up:
                yield from up.send(up_from, m * self.per_token_bytes)
            yield from t_server.serve(t_fwd.forward_s(1, m + 1, context) + t_fwd.step_s, self.label)
            if down:
                yield from down.send(down_from, self.result_bytes)
            c = min(k + 1, left)
            done, context = done + c, context + c
            r.steps, r.drafted, r.accepted = r.steps + 1, r.drafted + m, r.accepted + k
            steps.append((r.id, start, env.now, m, k, c))
        r.finish_s = env.now

