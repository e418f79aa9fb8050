"""Self-speculative decoding (LayerSkip, SPEED-style early exit): the target drafts for itself.

The draft is the target's first k = `draft_layers` of its L decoder blocks: no second model
in memory (the memory check counts the target only, whose KV cache the draft shares), no
prefill of its own (the target's prefill fills the first k layers' cache too) and no link (it
runs on the target's device, taking turns with the verify on that one server).

Per step, as speculative decoding with the draft on the target's device: g = min(gamma,
left - 1) early-exit forwards of one token at contexts c, ..., c + g - 1, each taking the
target's forward time x k / L (`profiles.layer_share`, plus the device's draft_forward_ms
overhead), then one full target forward of g + 1 tokens at c + step_ms; k accepted drafts
are drawn from the scenario's acceptance model, k + 1 tokens committed. With iid acceptance
and constant profiles this is Leviathan et al.'s setting with cost ratio c = k / L. Not
modeled: a verify that reuses the draft's first-k-layer activations (LayerSkip's cache
reuse would save up to k / L of each verify).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ..closed_form import Closed, speedup
from ..fields import Ref
from ..profiles import layer_share
from .base import Placement, StrategySpec
from .speculative import Lane, SpeculativeProcess, alone


class SelfSpeculative(StrategySpec):
    """Self-speculative decoding (LayerSkip, SPEED): the draft is the target's first `draft_layers`
    decoder blocks (early exit), so no second model and no link; see strategies/self_speculative.py."""

    rules: ClassVar[str] = "`draft_layers` < the target's layers."
    kind: Literal["self_speculative"] = Field(description="Strategy kind: draft with the target's first layers.")
    target: Placement = Field(description="Where the target model runs (it drafts too).")
    draft_layers: int = Field(ge=1, description="k: decoder blocks (layers) the draft runs, the target's "
                              "first k; fewer than the target's layers.")
    gamma: int = Field(4, ge=0, le=64, description="Tokens drafted per step.")

    def check(self, scenario) -> None:
        layers = scenario.models[self.target.model].architecture().layers
        if self.draft_layers >= layers:
            raise Ref("strategy.draft_layers", f"must be < the target's layers ({layers})")

    def build(self, world):
        return SelfSpeculativeProcess(self, world)

    def estimate(self, f) -> Closed:
        """Leviathan's step with t_draft = t_target x draft_layers / layers, on the target's device."""
        g, dev, t_fwd = self.gamma, self.target.device, f.forward(self.target)
        layers = f.scenario.models[self.target.model].architecture().layers
        d_fwd = layer_share(t_fwd, self.draft_layers, layers)
        e_tokens = f.world.acceptance.mean_accepted(g) + 1
        step = g * d_fwd.forward_s(1, 1, f.ctx) + t_fwd.forward_s(1, g + 1, f.ctx) + t_fwd.step_s
        ttft = f.add(dev, t_fwd.prefill_s(1, f.prompt, 0))
        f.add(dev, step * (f.output - 1) / e_tokens)
        c = self.draft_layers / layers
        alpha = getattr(f.scenario.acceptance, "alpha", None)
        return Closed(ttft, step / e_tokens, {
            "tokens_per_step": e_tokens, "step_s": step,
            "speedup_vs_autoregressive": (e_tokens / step) * f.ar_token_s if step else None,
            "cost_ratio_c": c, "leviathan_speedup": speedup(alpha, g, c) if alpha is not None else None})


class SelfSpeculativeProcess(SpeculativeProcess):
    def __init__(self, spec, world):
        self.env, self.steps = world.env, world.steps
        self.solo = alone(world)
        self.depth = spec.gamma
        self.sent = list(range(self.depth + 1))
        self.acceptance = world.acceptance
        dev = world.devices[spec.target.device]
        self.t_server, self.t_fwd = dev.server, dev.forward[spec.target.model]
        layers = world.scenario.models[spec.target.model].architecture().layers
        self.d_fwd = layer_share(self.t_fwd, spec.draft_layers, layers)
        self._lane = Lane(dev.server, self.d_fwd, None, dev.name, None, dev.name)  # draft and verify take turns

    def prefill(self, r, lane):
        return self.target_prefill(r.prompt_tokens)  # fills the draft's layers too
