"""What every strategy's closed form works with: the Frame (the scenario's world at the workload's
mean lengths, and a ledger of busy seconds per device and link direction) and the Closed answer
(TTFT, TPOT and the strategy's own report keys). analytic.py turns an answer into throughput,
utilization and the bottleneck by operational laws; each strategy module has its closed form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from . import payloads
from .payloads import RESULT_BYTES, TOKEN_ID_BYTES

if TYPE_CHECKING:
    from .engine import World
    from .network import Link
    from .profiles import ForwardTime
    from .scenario import Scenario
    from .workload import Requests


def expected_tokens_per_step(alpha: float, gamma: int) -> float:
    """(1 - a^(g+1)) / (1 - a): accepted drafts plus the target's own token, iid acceptance."""
    if alpha == 1:
        return gamma + 1.0
    return (1 - alpha ** (gamma + 1)) / (1 - alpha)


def speedup(alpha: float, gamma: int, c: float) -> float:
    """Walltime improvement over autoregressive decoding: (1 - a^(g+1)) / ((1 - a)(g c + 1))."""
    return expected_tokens_per_step(alpha, gamma) / (gamma * c + 1)


class Closed(NamedTuple):
    """A strategy's closed form: seconds to the first token and per later token, its report keys
    (tokens_per_step first), and, where a device's busy seconds per request at the running load
    differ from its demand at capacity (batching), those busy seconds, for the utilization."""

    ttft: float
    tpot: float
    report: dict
    busy_s: dict | None = None


@dataclass
class Frame:
    scenario: Scenario
    world: World
    requests: Requests
    ctx: int  # committed context at mid-output: mean prompt + mean output / 2, tokens
    prompt: int  # mean prompt, tokens
    output: float  # mean output, tokens
    ar_token_s: float  # autoregressive seconds per token of the reference target
    demand: dict[str, float] = field(default_factory=dict)  # busy seconds per request, by device or link direction

    def add(self, key: str, seconds: float) -> float:
        self.demand[key] = self.demand.get(key, 0.0) + seconds
        return seconds

    def forward(self, place) -> ForwardTime:
        return self.world.devices[place.device].forward[place.model]

    def link(self, a: str, b: str) -> Link | None:
        return self.world.link(a, b) if a != b else None

    def per_token_bytes(self, payload: str, model: str) -> int:
        arch = self.scenario.models[model].architecture()
        return payloads.per_drafted_token(payload, arch.vocab, arch.dtype_bytes)

    def round_trip(self, link: Link, src: str, dst: str, up_bytes: int, steps: float,
                   share: int = 1) -> tuple[float, float]:
        """A drafter at `src` and its verifier at `dst`: (seconds the prompt's trip up and the first
        token's down add to the TTFT, seconds a step's trip of up_bytes up and the result down adds
        to it), adding the link's demand for one prompt and `steps` steps (over `share` requests
        when that many drafters share the figure)."""
        up, down = link.mean_wire_s(up_bytes, src), link.mean_wire_s(RESULT_BYTES, dst)
        prompt_up = link.mean_wire_s(self.prompt * TOKEN_ID_BYTES, src)
        self.add(f"{link.name}:{link.direction(src)}", (prompt_up + up * steps) / share)
        self.add(f"{link.name}:{link.direction(dst)}", down * (steps + 1) / share)
        return prompt_up + down + 2 * link.mean_flight_s(), up + down + 2 * link.mean_flight_s()
