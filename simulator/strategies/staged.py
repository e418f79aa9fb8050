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

The whole draft phase (prefills aside) is one job on the draft's device: draft2's forwards
(its own device's forward times, or `draft2_ms_per_token` per token fed) are spent inside it,
and draft2's device, when it is another, is not held by them (a host n-gram stage).
Limits: with inner_alpha = 1 and inner_gamma >= g - 1 one inner step settles all g levels:
draft phase = sum over m = 1..g-1 of t_draft2(n_(m-1), ctx(m)) + t_draft(1 + N_g - n_g, c);
with a zero-cost draft2 that is one draft forward per step instead of g. With inner_alpha =
0 every inner step settles one level at the cost of tree's forward for it plus h draft2
forwards and h levels more in its query, so it costs at least tree's draft phase. A request
starts with draft2's prefill, then the draft's (both skipped with an empty tree).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from .. import acceptance
from ..fields import Prob
from .base import Placed, Placement, Role
from .speculative import draft_length
from .tree import SIZE_RULE, TreeProcess, TreeShape


class Staged(TreeShape):
    """Staged speculation (Spector and Re 2023): a token tree whose draft is itself sped up by
    speculative decoding with a smaller second-stage drafter; see simulator/strategies/staged.py."""

    rules: ClassVar[str] = SIZE_RULE + "; refuses `trace` acceptance."
    kind: Literal["staged"] = Field(description="Strategy kind: a token tree drafted by a speculatively decoded draft.")
    draft: Placement = Field(description="Where the first-stage draft model runs (and where the user is).")
    target: Placement = Field(description="Where the target model runs.")
    draft2: Placement = Field(description="The second-stage drafter (e.g. an n-gram model: a tiny custom "
                              "model), on any device: its forwards take that device's forward times (or "
                              "draft2_ms_per_token), inside the draft phase, which holds the draft's device.")
    draft2_ms_per_token: float | None = Field(None, ge=0, allow_inf_nan=False, description="The second "
                                              "stage's own cost, in ms per token it is fed (a constant per token, "
                                              "as an n-gram lookup on the host costs), instead of a profile's "
                                              "forward times.")
    inner_gamma: int = Field(4, ge=0, le=64, description="Tree depth levels the second stage proposes per "
                             "inner step, in levels (tokens, for a chain).")
    inner_alpha: Prob = Field(description="Probability (iid) that the draft accepts a level the second "
                              "stage proposed (a token, for a chain).")

    def placements(self) -> dict[str, Placed]:
        return {"draft": self.draft.placed(Role.DRAFT), "draft2": self.draft2.placed(Role.DRAFT),
                "target": self.target.placed(Role.TARGET)}

    def exchanges(self) -> list[tuple[str, str]]:
        return [("draft", "target")]

    def build(self, world):
        return StagedProcess(self, world)

    def draft_prefill_s(self, f) -> float:
        d_prefill = super().draft_prefill_s(f)
        if self.branching and self.inner_gamma:
            d_prefill += self.second_stage(f.forward(self.draft2)).prefill_s(1, f.prompt, 0)
        return d_prefill

    def draft_phase_s(self, f, levels: list[int]) -> float:
        """The exact expectation, over the inner acceptances, of the inner steps below."""
        depth, a, ctx = len(self.branching), self.inner_alpha, f.ctx
        d_fwd, d2_fwd = f.forward(self.draft), self.second_stage(f.forward(self.draft2))
        after = [0.0] * (depth + 2)  # after[i]: expected draft time to settle levels i..depth
        for i in range(depth, 0, -1):
            h = draft_length(self.inner_gamma, depth - i + 1)
            cost = sum(d2_fwd.forward_s(1, levels[m - 1], ctx) for m in range(i, i + h))
            cost += d_fwd.forward_s(1, sum(levels[i - 1:i + h]), ctx)
            pmf = [a ** j * (1 - a) for j in range(h)] + [a ** h]  # J accepted of h, iid
            after[i] = cost + sum(pj * after[min(i + j + 1, depth + 1)] for j, pj in enumerate(pmf))
        return after[1] if depth else 0.0


    def second_stage(self, fwd):
        """draft2's forward times: its device's, or draft2_ms_per_token's constant per token."""
        return fwd if self.draft2_ms_per_token is None else PerToken(self.draft2_ms_per_token)


class PerToken:
    """Forward times of a constant cost per token fed (batch x query tokens), in ms per token."""

    def __init__(self, ms: float) -> None:
        self.s = ms / 1000

    def forward_s(self, batch: int, query: int, context: int) -> float:
        return self.s * batch * query

    prefill_s = forward_s


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


class StagedProcess(TreeProcess):
    def __init__(self, spec, world):
        super().__init__(spec, world)
        self.inner_gamma = spec.inner_gamma
        self.d2_fwd = spec.second_stage(world.devices[spec.draft2.device].forward[spec.draft2.model])
        a = spec.inner_alpha
        self.inner = acceptance.Acceptance(lambda h: a ** np.arange(h + 1), world.acceptance.child_rng())

    def draft_s(self, fwd, g: int, context: int) -> float:
        fwds = {"draft": fwd, "draft2": self.d2_fwd}
        return sum(fwds[m].forward_s(1, q, ctx) for m, q, ctx in inner_plan(self.levels, g, context, self.inner_gamma,
                                                                        self.inner.draw))

    def prefill(self, r, lane):
        if self.depth and self.inner_gamma:
            yield from lane.d_server.serve(self.d2_fwd.prefill_s(1, r.prompt_tokens, 0), "prefill")
        yield from super().prefill(r, lane)
