"""Medusa heads (Cai et al. 2024): draft heads on the target's own last hidden state propose a
token tree, which the target verifies in its next forward; there is no draft model.

A step is the token tree of strategies/tree.py (same shape, same acceptance from the scenario's
model and `top_k_decay`, same verification of 1 + N_g tokens at context c) without a draft
phase: the heads read the hidden state the previous verification left, so drafting costs no
forward of its own, only the heads' MLPs, `heads_ms` a step on the target's device (one job with
the verification, as they run with it). No draft prefill, no second model in memory, no link.
A tree of width 1 with heads_ms 0 is a chain whose drafts are free: speculative decoding at
cost ratio c = 0, whose speedup is Leviathan's (1 - alpha^(g+1)) / (1 - alpha).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ..fields import NonNeg
from .base import Placed, Placement, Role
from .speculative import Lane, prelude
from .tree import SIZE_RULE, TreeProcess, TreeShape


class Medusa(TreeShape):
    """Medusa heads: the target's own heads propose a token tree, verified in its next forward;
    no draft model, no draft forward; see simulator/strategies/medusa.py."""

    rules: ClassVar[str] = SIZE_RULE + "; a branching above 1 refuses `trace` acceptance."
    kind: Literal["medusa"] = Field(description="Strategy kind: draft heads on the target propose a tree.")
    target: Placement = Field(description="Where the target model (and its heads) runs.")
    heads_ms: NonNeg = Field(0.0, description="The heads' own time per step, in ms (their MLPs over the "
                             "target's last hidden state), run with every verification.")

    @property
    def draft(self) -> Placement:
        """The heads sit on the target (the tree's closed form asks where drafting happens)."""
        return self.target

    def placements(self) -> dict[str, Placed]:
        return {"target": self.target.placed(Role.TARGET)}

    def exchanges(self) -> list[tuple[str, str]]:
        return []

    def draft_prefill_s(self, f) -> float:
        return 0.0

    def draft_phase_s(self, f, levels: list[int]) -> float:
        return self.heads_ms / 1000 if self.branching else 0.0

    def build(self, world):
        return MedusaProcess(self, world)

    def describe(self) -> str:
        return (f"medusa heads, tree {list(self.branching)}: {self.target.model} on {self.target.device}, "
                f"heads {self.heads_ms:g} ms a step")


class MedusaProcess(TreeProcess):
    """The tree's process with the target's own device and forward times as the "drafter" (the spec's
    `draft` is its target: no link, no second model) and the heads' time as the draft job."""

    def __init__(self, spec, world):
        super().__init__(spec, world)
        self.heads_s = spec.heads_ms / 1000

    def draft_s(self, fwd, g: int, context: int) -> float:
        return self.heads_s if g else 0.0

    def prefill(self, r, lane: Lane):
        return prelude(r, lane, False, self.target_prefill, self.result_bytes)  # no draft model to prefill

