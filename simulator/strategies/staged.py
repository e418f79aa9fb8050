"""Staged speculation (Spector and Re 2023): a token tree whose drafter is itself speculatively
decoded by a smaller second-stage drafter (`draft2`, e.g. an n-gram model).

Outer level: exactly the token tree of strategies/tree.py (same shape, same acceptance draws
from the scenario's acceptance stream, same link messages, same verify of 1 + N_g tokens at
context c). Only the draft phase differs.

Inner level, how tree levels combine with it. Tree speculation spends one draft forward per
depth level. Here the levels are settled along depth by inner speculative decoding, one level
playing the part of one token of a chain. With levels n_0 = 1, n_1, ..., n_g (strategies/
tree.py) and ctx(i) = c + n_0 + ... + n_(i-2) the context at which level i's parents enter the
KV cache, and i the next level to settle (1 at first), each inner step:

1. h = min(inner_gamma, g - i) (never propose a level the draft's own bonus level can give);
2. draft2 proposes levels i, ..., i + h - 1: h forwards, the one for level m feeding the
   n_(m-1) nodes above it at ctx(m) (on a chain: h forwards of one token);
3. the draft checks them in one forward over the frontier and the proposed levels,
   query n_(i-1) + n_i + ... + n_(i+h-1) tokens at ctx(i) (on a chain: h + 1 tokens);
4. J of the h proposed levels are accepted, J drawn iid with `inner_alpha` per level
   (P(J >= j) = inner_alpha^j, j <= h) from a Generator spawned from the acceptance stream (so
   the outer draws are those of tree speculation whatever the inner stage does);
5. levels i .. i + J are settled (J accepted plus the draft's own bonus level): i += J + 1.

The whole draft phase (prefills aside) is one job on the draft's device, which draft2 shares.
Limits: with inner_alpha = 1 and inner_gamma >= g - 1 one inner step settles all g levels:
draft phase = sum over m = 1..g-1 of t_draft2(n_(m-1), ctx(m)) + t_draft(1 + N_g - n_g, c);
with a zero-cost draft2 that is one draft forward per step instead of g. With inner_alpha =
0 every inner step settles one level at the cost of tree's forward for it plus h draft2
forwards and h levels more in its query, so it costs at least tree's draft phase. A request
starts with draft2's prefill, then the draft's (both skipped with an empty tree).
"""

from __future__ import annotations

import numpy as np

from ..acceptance import Acceptance
from .speculative import draft_length
from .tree import Tree


def inner_plan(levels: list[int], g: int, context: int, inner_gamma: int, draw) -> list[tuple[str, int, int]]:
    """The forwards of a staged draft phase of g levels, as (model, query, context), model
    'draft2' or 'draft'; `draw(h)` gives the levels of h proposed that the draft accepts."""
    ctx = np.concatenate([[context], context + np.cumsum(levels)]).astype(int).tolist()  # ctx[i - 1] = ctx(i)
    out: list[tuple[str, int, int]] = []
    i = 1
    while i <= g:
        h = draft_length(inner_gamma, g - i + 1)
        out.extend(("draft2", levels[m - 1], ctx[m - 1]) for m in range(i, i + h))
        out.append(("draft", sum(levels[i - 1:i + h]), ctx[i - 1]))
        i += (draw(h) if h else 0) + 1
    return out


class Staged(Tree):
    def __init__(self, spec, world):
        super().__init__(spec, world)
        self.inner_gamma = spec.inner_gamma
        self.d2_fwd = world.devices[spec.draft2.device].forward[spec.draft2.model]
        a = spec.inner_alpha
        self.inner = Acceptance(lambda h: a ** np.arange(h + 1), world.acceptance.child_rng())

    def draft_s(self, g: int, context: int) -> float:
        fwd = {"draft": self.d_fwd, "draft2": self.d2_fwd}
        return sum(fwd[m].forward_s(1, q, ctx) for m, q, ctx in inner_plan(self.levels, g, context, self.inner_gamma,
                                                                      self.inner.draw))

    def prefill(self, r):
        if self.depth and self.inner_gamma:
            yield from self.d_server.serve(self.d2_fwd.prefill_s(1, r.prompt_tokens, 0), "prefill")
        yield from super().prefill(r)
