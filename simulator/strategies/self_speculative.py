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
from .speculative import committed, draft_length, record_step


class SelfSpeculative:
    def __init__(self, spec, world):
        self.env, self.gamma, self.steps = world.env, spec.gamma, world.steps
        self.acceptance = world.acceptance
        dev = world.devices[spec.target.device]
        self.server, self.t_fwd = dev.server, dev.forward[spec.target.model]
        layers = world.scenario.models[spec.target.model].architecture().layers
        self.d_fwd = layer_share(self.t_fwd, spec.draft_layers, layers)

    def serve(self, r):
        env, server = self.env, self.server
        yield from server.serve(self.t_fwd.point(1, r.prompt_tokens, 0), "prefill")  # fills the draft's layers too
        r.first_token_s = env.now
        done, context = 1, r.prompt_tokens
        draw, steps = self.acceptance.draw, self.steps
        while done < r.output_tokens:
            start = env.now
            left = r.output_tokens - done
            g = draft_length(self.gamma, left)
            if g:
                yield from server.serve(self.d_fwd.run(1, 1, context, g), "draft")
            yield from server.serve(self.t_fwd.one(1, g + 1, context) + self.t_fwd.step_s, "verify")
            k = draw(g) if g else 0
            c = committed(k, left)
            done += c
            context += c
            record_step(r, steps, start, env.now, g, k, c)
        r.finish_s = env.now
