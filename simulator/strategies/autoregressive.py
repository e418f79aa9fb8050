"""Autoregressive decoding: a prefill over the prompt, then one target forward per token."""

from __future__ import annotations

from ..records import StepRecord


class Autoregressive:
    def __init__(self, spec, world):
        self.env = world.env
        device = world.devices[spec.target.device]
        self.server, self.forward = device.server, device.forward[spec.target.model]
        self.steps = world.steps

    def serve(self, r):
        env, server, forward = self.env, self.server, self.forward
        yield from server.serve(forward.prefill_s(1, r.prompt_tokens, 0), "prefill")  # prefill yields the first token
        r.first_token_s = env.now
        context = r.prompt_tokens  # tokens in the KV cache; the newest token is not yet
        for _ in range(r.output_tokens - 1):
            start = env.now
            yield from server.serve(forward.forward_s(1, 1, context) + forward.step_s, "decode")
            context += 1
            self.steps.append(StepRecord(r.id, start, env.now, 0, 0, 1))
        r.steps = r.output_tokens - 1
        r.finish_s = env.now
