"""PEARL's closed form for pre-verify and adaptive blocks (simulator/strategies/pearl.py)."""

from __future__ import annotations

import numpy as np

from ..closed_form import Closed
from .speculative import RESULT_BYTES, TOKEN_ID_BYTES

APPROXIMATE = ("pearl: a chain of three kinds of round (after a rejection, first post-verify, post-verify "
               "after a full accept), exact at alpha = 1; block lengths that vary from round to round and "
               "the exact timing of drafts in flight are simulated only")


class _Costs:
    """Seconds of the pieces of a round at context ctx, seen by the drafter."""

    def __init__(self, f, spec):
        self.acc, d, t = f.world.acceptance, spec.draft, spec.target
        self.d_fwd, self.t_fwd, self.ctx = f.forward(d), f.forward(t), f.ctx
        self.link, self.d_dev, self.t_dev = f.link(d.device, t.device), d.device, t.device
        self.per_tok = f.per_token_bytes(spec.draft_payload, d.model)
        self.t_draft = self.d_fwd.forward_s(1, 1, f.ctx)
        self.down = self.link.mean_wire_s(RESULT_BYTES, t.device) if self.link else 0.0
        self.flight = self.link.mean_flight_s() if self.link else 0.0

    def up(self, n: int) -> float:  # n drafts on the wire
        return self.link.mean_wire_s(n * self.per_tok, self.d_dev) if self.link else 0.0

    def forward(self, n: int) -> float:  # the target's forward over the newest token and n drafts
        return self.t_fwd.forward_s(1, n + 1, self.ctx) + self.t_fwd.step_s

    def verify(self, n: int) -> float:  # that forward with the block's trip up and the verdict's down
        return self.forward(n) + self.up(n) + self.down + 2 * self.flight

    def made(self, n: int) -> tuple[float, float]:  # tokens a post-verify of n drafts makes; P(all n accepted)
        pmf = self.acc.pmf(n)
        return n * float(pmf[n]) + sum(float(pmf[k]) * (k + 1) for k in range(n)), float(pmf[n])


def _rounds(spec, k: _Costs) -> tuple[list[float], list[tuple]]:
    """Stationary weights of the kinds of round (A, P1, P) and per kind (seconds, tokens made,
    target busy s, drafter busy s, drafts sent up)."""
    gamma, t_draft, adaptive = spec.gamma, k.t_draft, spec.draft_length == "adaptive"
    if not gamma:  # plain target steps, all of kind A
        return [1.0, 0.0, 0.0], [(k.verify(0), 1.0, k.forward(0), 0.0, 0)] * 3
    g = min(gamma, int(np.ceil(k.verify(gamma) / t_draft))) if adaptive else gamma
    r_p = max(g * t_draft, k.verify(g))
    in_flight = t_draft / 2 if gamma * t_draft > k.verify(g) else 0.0
    # fixed pre-verify in lock step: the first draft waits for its block, which travels up with it
    lock = gamma if spec.verify == "pre_post" and not adaptive and gamma > 1 else 0
    if spec.verify == "pre_post":  # the target's forward starts at its verdict, a trip down earlier
        drafting, n_up = (lock or 1) * t_draft, lock or 1
        r_a = max(k.forward(0) - k.down - k.flight, in_flight + drafting + k.up(n_up) + k.flight) + k.down + k.flight
        t_a = k.forward(0)
    else:
        r_a, t_a = in_flight + t_draft + k.verify(1), k.forward(1)
    ready = min(gamma + 1, (r_a - in_flight) / t_draft) - 1  # drafts past the first when A ends
    g1 = min(gamma, max(1, round(ready))) if adaptive else (lock - 1 if lock else gamma)
    # lock step: the rest of the block is at the target, which verifies it at its own verdict
    r_1 = k.forward(g1) if lock else max(0.0, g1 - ready) * t_draft + k.verify(g1)
    (c_1, f1), (c_p, f) = k.made(g1), k.made(g)
    a1 = float(k.acc.pmf(1)[1])
    return [1 - f, a1 * (1 - f), a1 * f1], [(r_a, 1.0, t_a, min(r_a, (gamma + 1) * t_draft), lock or 1),
                                            (r_1, c_1, k.forward(g1), min(r_1, (g1 + gamma) * t_draft),
                                             0 if lock else g1),
                                            (r_p, c_p, k.forward(g), min(r_p, g * t_draft), g)]


def parallel_estimate(f, spec) -> Closed:
    """PEARL with pre-verify and/or an adaptive draft length, as a chain of three kinds of round,
    times seen by the drafter:
      A, after a rejection: pre_post, the target's 1-token forward (started a trip down earlier)
         beside the draft in flight (t_draft / 2 when the drafter is busy at verdicts), one draft
         and its trip up; post, that draft then its verification. 1 token either way; the draft
         survives with a1 = P(K >= 1), moving the stream to P1.
      P1, the first post-verify: fixed, it waits for a block of gamma past the drafts A made;
         adaptive, it takes those (at least one, at most gamma).
      P, post-verify after a full accept: g = gamma (fixed) or the drafts one verification lasts
         (adaptive: ceil(round / t_draft), at most gamma); max(g t_draft, t_verify(g + 1) + trip).
    P1 and P make g on a full accept (then P), else k + 1 (then A). Stationary weights
    A : P1 : P = 1 - f : a1 (1 - f) : a1 f1, f and f1 the chances of a full accept. Exact at
    alpha = 1 (min(gamma / round, 1 / t_draft) tokens/s) and, co-located with pre_post and
    2 t_draft <= t_verify, at alpha = 0 (autoregressive pace); approximate between."""
    k = _Costs(f, spec)
    weights, rounds = _rounds(spec, k)
    w = np.array(weights) / sum(weights)
    round_s, e_tokens, target_s, draft_s = (float(w @ [rd[i] for rd in rounds]) for i in range(4))
    n_rounds = (f.output - 1) / e_tokens
    d_prefill = k.d_fwd.prefill_s(1, f.prompt, 0) if spec.gamma else 0.0
    link = k.link
    f.add(f"{k.d_dev}:draft-stream" if link is None else k.d_dev, d_prefill + n_rounds * draft_s)
    f.add(k.t_dev, k.t_fwd.prefill_s(1, f.prompt, 0) + n_rounds * target_s)
    ttft = d_prefill + k.t_fwd.prefill_s(1, f.prompt, 0)
    if link is not None:
        prompt_up = link.mean_wire_s(f.prompt * TOKEN_ID_BYTES, k.d_dev)
        sent = float(w @ [k.up(rd[4]) for rd in rounds])
        f.add(f"{link.name}:{link.direction(k.d_dev)}", prompt_up + n_rounds * sent)
        f.add(f"{link.name}:{link.direction(k.t_dev)}", k.down * (n_rounds + 1))
        ttft += prompt_up + k.down + 2 * k.flight
    tpot = round_s / e_tokens
    return Closed(ttft, tpot, {"tokens_per_step": e_tokens, "step_s": tpot * e_tokens,
                               "speedup_vs_autoregressive": f.ar_token_s / tpot, "approximate": APPROXIMATE})
