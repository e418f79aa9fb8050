"""Autoregressive decoding: a prefill over the prompt, then one target forward per token."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..closed_form import Closed
from .base import Placement, StrategySpec


class Autoregressive(StrategySpec):
    """One target forward pass per output token."""

    kind: Literal["autoregressive"] = Field(description="Strategy kind: autoregressive decoding.")
    target: Placement = Field(description="Where the target model runs.")

    def build(self, world):
        return AutoregressiveProcess(self, world)

    def estimate(self, f) -> Closed:
        """A prefill, then output - 1 forwards of one token, each with the per-step overhead."""
        dev = self.target.device
        ttft = f.add(dev, f.forward(self.target).prefill_s(1, f.prompt, 0))
        f.add(dev, f.ar_token_s * (f.output - 1))
        return Closed(ttft, f.ar_token_s, {"tokens_per_step": 1.0})

    def describe(self) -> str:
        return f"autoregressive: {self.target.model} on {self.target.device}"


class AutoregressiveProcess:
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
            self.steps.append((r.id, start, env.now, 0, 0, 1))  # a row of records.StepRecord
        r.steps = r.output_tokens - 1
        r.finish_s = env.now
