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
chain of g, the conditional acceptance at depth i is alpha_i = S(i) / S(i - 1). At depth i the
rank-j child (j = 1..b_i, ranked by the draft) of the node on the accepted path matches the
target's token with probability alpha_i d^(j - 1), d = `top_k_decay`; the target picks one
token, so these events are exclusive and the path continues with probability

    p_i = min(1, alpha_i (1 + d + ... + d^(b_i - 1))).

The accepted length K is the number of leading depths that continue: P(K >= i) = p_1 ... p_i;
the step commits K + 1 tokens, E[K] + 1 = 1 + sum over i of p_1 ... p_i. K is drawn by
`acceptance.Acceptance` from that survival with the Generator of the scenario's acceptance
model; a tree of width 1 uses the scenario's acceptance model itself (p_i = alpha_i), so it
draws exactly what speculative decoding with gamma = D draws. `drafted` in the records counts
tree nodes, so the acceptance rate is accepted / nodes.
"""

from __future__ import annotations

import numpy as np

from ..acceptance import conditional
from ..scenario import tree_levels
from .speculative import Speculative


def continue_probabilities(alphas, branching, decay: float) -> np.ndarray:
    """p_i = min(1, alpha_i x (1 + d + ... + d^(b_i - 1))) for each depth i."""
    widths = np.array([sum(decay ** j for j in range(b)) for b in branching], dtype=float)
    return np.minimum(1.0, np.asarray(alphas, dtype=float) * widths)


def tree_survival(chain_survival, branching, decay: float) -> np.ndarray:
    """P(K >= i), i = 0..len(branching), of a tree, from the chain's P(K >= i) of the same depth."""
    p = continue_probabilities(conditional(chain_survival), branching, decay)
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


class Tree(Speculative):
    def __init__(self, spec, world):
        self.place(spec, world)
        self.levels, self.depth = tree_levels(spec.branching), len(spec.branching)
        self.sent = [0] + np.cumsum(self.levels[1:]).tolist()  # nodes of the levels 1..g
        self.acceptance = tree_acceptance(world.acceptance, list(spec.branching), spec.top_k_decay)

    def draft_s(self, g: int, context: int) -> float:
        """The draft job of a step with g levels."""
        total = 0.0
        for q, ctx, n in draft_forwards(self.levels, g, context):
            total += self.d_fwd.consecutive_s(1, q, ctx, n)
        return total
