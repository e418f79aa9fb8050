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

from ..profiles import layer_share
from .speculative import Speculative


class SelfSpeculative(Speculative):
    def __init__(self, spec, world):
        self.env, self.steps = world.env, world.steps
        self.depth = spec.gamma
        self.sent = list(range(self.depth + 1))
        self.acceptance = world.acceptance
        dev = world.devices[spec.target.device]
        self.d_server = self.t_server = dev.server  # draft and verify take turns on the one device
        self.t_fwd = dev.forward[spec.target.model]
        layers = world.scenario.models[spec.target.model].architecture().layers
        self.d_fwd = layer_share(self.t_fwd, spec.draft_layers, layers)
        self.link = None

    def prefill(self, r):
        yield from self.t_server.serve(self.t_fwd.prefill_s(1, r.prompt_tokens, 0), "prefill")  # fills the draft's layers too
