"""Closed forms: Leviathan et al. (2023) for one stream, operational laws for many.

`estimate` predicts a scenario without simulating it, from the same latency model the
simulator uses, evaluated at the workload's mean lengths and mid-output context:

  step_s         = g t_draft + t_verify(g + 1) + link time up and down      (per step)
                   link time of a message = its mean wire time (transfer x 1 / (1 - loss)) plus
                   its mean flight time (retransmit waits and mean one-way delay): network.py
  tokens_per_step = E[accepted] + 1
  request_s      = prefill_s + (output - 1) / tokens_per_step x step_s       (one user, no queueing)
  demand_s[X]    = busy seconds a request costs device or link direction X
  throughput     = min(offered load, 1 / max demand) requests per second, where the offered
                   load is users / (request_s + think_s) for a closed loop and the arrival rate
                   for open arrivals.

What it leaves out (queueing delays, end-of-output effects, the spread of jitter and of
retransmissions, interleaving of requests, contention on a shared medium) is what the
simulation adds.
"""

from __future__ import annotations

import numpy as np

from . import workload
from .engine import build_world, streams
from .scenario import (
    ClosedLoop,
    Federated,
    Pearl,
    Scenario,
    SelfSpeculative,
    SharedVerifier,
    Speculative,
    Staged,
    Tree,
)
from .scenario import Batched, PipeInfer, Pipeline
from .strategies.speculative import RESULT_BYTES, TOKEN_ID_BYTES, payload_bytes


def expected_tokens_per_step(alpha: float, gamma: int) -> float:
    """(1 - a^(g+1)) / (1 - a): accepted drafts plus the target's own token, iid acceptance."""
    if alpha == 1:
        return gamma + 1.0
    return (1 - alpha ** (gamma + 1)) / (1 - alpha)


def speedup(alpha: float, gamma: int, c: float) -> float:
    """Walltime improvement over autoregressive decoding: (1 - a^(g+1)) / ((1 - a)(g c + 1))."""
    return expected_tokens_per_step(alpha, gamma) / (gamma * c + 1)


def estimate(scenario: Scenario, source: str = "scenario") -> dict:
    rngs = streams(scenario.seed)
    reqs = workload.draw(scenario.workload, rngs["workload"])
    prompt = float(np.mean(reqs.prompts))
    output = float(np.mean(reqs.outputs))
    strat = scenario.strategy
    gamma = getattr(strat, "gamma", 0)
    world = build_world(scenario, source, int(max(reqs.prompts) + max(reqs.outputs) + strat.lookahead_tokens() + 1), rngs)
    ctx = int(round(prompt + output / 2))
    p = int(round(prompt))
    if isinstance(strat, (Pipeline, PipeInfer)):  # the whole target on the first stage's device
        t_place = strat.placements()["stages.0"]
    else:
        t_place = strat.workers[0] if isinstance(strat, Federated) else strat.target  # federated: worker 0's model
    target_dev = world.devices[t_place.device]
    t_fwd = target_dev.forward[t_place.model]
    demand: dict[str, float] = {}

    def add(key: str, seconds: float) -> float:
        demand[key] = demand.get(key, 0.0) + seconds
        return seconds

    ar_token_s = t_fwd.forward_s(1, 1, ctx) + t_fwd.step_s  # per-step overhead: one step per token
    out: dict = {"autoregressive_tokens_per_s": 1 / ar_token_s}
    if isinstance(strat, Pearl) and (strat.verify, strat.draft_length) != ("post", "fixed"):
        ttft, tpot, e_tokens = _pearl_parallel(world, strat, ctx, p, output, add)
        out.update({"tokens_per_step": e_tokens, "step_s": tpot * e_tokens,
                    "speedup_vs_autoregressive": ar_token_s / tpot, "approximate": (
                        "pearl: a chain of three kinds of round (after a rejection, first post-verify, post-verify "
                        "after a full accept), exact at alpha = 1; block lengths that vary from round to round and "
                        "the exact timing of drafts in flight are simulated only")})
    elif isinstance(strat, (Speculative, SharedVerifier, Pearl)):
        # shared verifier: the first edge stands for all (identical edges, each serving 1/n of the
        # users), and every verification rides in a full batch of b = min(max_batch, users)
        shared = isinstance(strat, SharedVerifier)
        d_model = strat.draft_model if shared else strat.draft.model
        d_dev = world.devices[strat.edges[0] if shared else strat.draft.device]
        d_fwd = d_dev.forward[d_model]
        n_edges = len(strat.edges) if shared else 1
        b = min(strat.max_batch, getattr(scenario.workload.arrival, "users", strat.max_batch)) if shared else 1
        e_tokens = world.acceptance.mean_accepted(gamma) + 1
        drafts_per_step = gamma
        if isinstance(strat, Pearl):  # a full accept commits gamma (no bonus); a rejection costs a fresh block
            pmf = world.acceptance.pmf(gamma)
            p_all = float(pmf[gamma]) if gamma else 0.0
            e_tokens = p_all * gamma + sum(float(pmf[k]) * (k + 1) for k in range(gamma)) if gamma else 1.0
            drafts_per_step = gamma * (2 - p_all)
        n_steps = (output - 1) / e_tokens
        link = world.link(d_dev.name, target_dev.name) if d_dev.name != target_dev.name else None
        arch = scenario.models[d_model].architecture()
        per_tok = payload_bytes(strat.draft_payload, arch.vocab, arch.dtype_bytes)
        t_draft, t_verify = d_fwd.forward_s(1, 1, ctx), t_fwd.forward_s(b, gamma + 1, ctx) + t_fwd.step_s
        d_prefill = d_fwd.prefill_s(1, p, 0) if gamma else 0.0
        prefill = d_prefill + t_fwd.prefill_s(1, p, 0)
        colocated_stream = isinstance(strat, Pearl) and d_dev.name == target_dev.name  # a server of its own
        add(f"{d_dev.name}:draft-stream" if colocated_stream else d_dev.name,
            (d_prefill + n_steps * drafts_per_step * t_draft) / n_edges)
        add(target_dev.name, t_fwd.prefill_s(1, p, 0) + n_steps * t_verify / b)
        step = gamma * t_draft + t_verify
        if link is not None:
            # mean seconds on the wire (every attempt) and off it (retransmit waits, delay): network.py
            up, down = link.mean_wire_s(gamma * per_tok, d_dev.name), link.mean_wire_s(RESULT_BYTES, target_dev.name)
            prompt_up = link.mean_wire_s(p * TOKEN_ID_BYTES, d_dev.name)
            way_up, way_down = link.direction(d_dev.name), link.direction(target_dev.name)
            add(f"{link.name}:{way_up}", (prompt_up + up * n_steps) / n_edges)
            add(f"{link.name}:{way_down}", down * (n_steps + 1) / n_edges)
            prefill += prompt_up + down + 2 * link.mean_flight_s()
            step += up + down + 2 * link.mean_flight_s()
        if isinstance(strat, Pearl):  # drafting the next block hides behind the verification round trip
            overlap = max(gamma * t_draft, step - gamma * t_draft)
            step = p_all * overlap + (1 - p_all) * (overlap + gamma * t_draft)
        c = d_fwd.forward_s(1, 1, ctx) / t_fwd.forward_s(1, 1, ctx)
        alpha = getattr(scenario.acceptance, "alpha", None)
        out.update({
            "tokens_per_step": e_tokens,
            "step_s": step,
            "cost_ratio_c": c,
            "leviathan_speedup": speedup(alpha, gamma, c) if alpha is not None else None,
            "speedup_vs_autoregressive": (e_tokens / step) * ar_token_s if step else None,
        })
        ttft, tpot = prefill, step / e_tokens
    elif isinstance(strat, (Tree, Staged, SelfSpeculative)):
        ttft, step, e_tokens = _tree_family(scenario, world, strat, ctx, p, output, add)
        tpot = step / e_tokens
        out.update({"tokens_per_step": e_tokens, "step_s": step,
                    "speedup_vs_autoregressive": (e_tokens / step) * ar_token_s if step else None})
        if isinstance(strat, SelfSpeculative):
            c = strat.draft_layers / scenario.models[strat.target.model].architecture().layers
            alpha = getattr(scenario.acceptance, "alpha", None)
            out.update({"cost_ratio_c": c,
                        "leviathan_speedup": speedup(alpha, strat.gamma, c) if alpha is not None else None})
    elif isinstance(strat, (Pipeline, PipeInfer)):
        ttft, tpot, e_tokens = _pipeline(scenario, world, strat, ctx, p, output, add)
        out.update({"tokens_per_step": e_tokens, "step_s": tpot * e_tokens})
        if isinstance(strat, PipeInfer):
            out["approximate"] = ("pipeinfer: estimated as the synchronous pipeline with its draft (one "
                                  "micro-batch at a time); the asynchronous overlap and cancellations are simulated only")
    elif isinstance(strat, Federated):
        ttft, tpot, e_tokens = _federated(world, strat, ctx, p, output, add)
        out["tokens_per_step"] = e_tokens
    elif isinstance(strat, Batched):
        ttft, tpot, e_tokens, batch, busy_s = _batched(scenario, world, strat, ctx, p, output, reqs, add)
        out.update({"tokens_per_step": e_tokens, "batch": batch, "approximate": (
            "batched: at the mean batch from Little's law and mean lengths; queueing for admission, prefill "
            "steps stalling decodes and policies other than fixed are simulated only")})
    else:
        ttft = add(target_dev.name, t_fwd.prefill_s(1, p, 0))
        add(target_dev.name, ar_token_s * (output - 1))
        tpot = ar_token_s
        out["tokens_per_step"] = 1.0
    request_s = ttft + tpot * (output - 1)
    bottleneck = max(demand, key=demand.get)
    capacity = 1 / demand[bottleneck] if demand[bottleneck] > 0 else float("inf")
    arrival = scenario.workload.arrival
    if isinstance(arrival, ClosedLoop):
        offered = arrival.users / (request_s + arrival.think_ms / 1000)
    else:
        offered = len(reqs.arrivals_s) / max(reqs.arrivals_s[-1], 1e-12)
    rate = min(offered, capacity)
    out.update({
        "throughput_tokens_per_s": rate * output,
        "stream_tokens_per_s": output / request_s,
        "latency_s": {"ttft": ttft, "tpot": tpot, "e2e": request_s},
        "bottleneck": bottleneck,
        "utilization": {k: min(1.0, v * rate) for k, v in demand.items()},
        "saturated": offered > capacity * (1 + 1e-9),
    })
    if isinstance(strat, Batched):  # capacity is at the largest batch; the busy time at the batch it runs
        out["utilization"] = {strat.target.device: min(1.0, rate * busy_s)}
    return out


def _batched(scenario, world, strat: Batched, ctx: int, p: int, output: float, reqs, add):
    """Continuous batching at the steady batch b: a decode step of b requests drafting g each costs
    step(b) = g draft forwards + a verify over g + 1 tokens + the step overhead, and commits E[K] + 1
    per request. While a request decodes, the b - 1 others turn over once each and every newcomer's
    prefill stalls the batch, so a request spends (output - 1) / (E[K] + 1) x step(b) + (b - 1) x
    prefill decoding. b is the fixed point of Little's law, b = arrival rate x (that + prefill),
    capped by max_batch and by the KV memory (prompt + output + g + 1 tokens a request); a closed
    loop runs min(users, cap). Capacity is at the cap."""
    from .strategies.batched import kv_capacity

    t_fwd = world.devices[strat.target.device].forward[strat.target.model]
    d_fwd = world.devices[strat.draft.device].forward[strat.draft.model] if strat.draft is not None else None
    g = strat.speculation.gamma if d_fwd is not None else 0
    e_tokens = world.acceptance.mean_accepted(g) + 1 if g else 1.0
    held = p + (output / 2 if strat.preemption == "recompute" else output) + g + 1
    cap = int(max(1, min(strat.max_batch, kv_capacity(strat, world)[0] // held)))

    def step(b: float) -> float:
        b = int(round(b))
        return (d_fwd.consecutive_s(b, 1, ctx, g) if g else 0.0) + t_fwd.forward_s(b, g + 1, ctx) + t_fwd.step_s

    prefill = t_fwd.prefill_s(1, p, 0) + (d_fwd.prefill_s(1, p, 0) if g else 0.0)
    n_steps = (output - 1) / e_tokens
    arrival = scenario.workload.arrival
    if isinstance(arrival, ClosedLoop):
        b = float(min(arrival.users, cap))
    else:
        rate, b = len(reqs.arrivals_s) / max(reqs.arrivals_s[-1], 1e-12), 1.0
        for _ in range(60):
            b = min(float(cap), max(1.0, rate * (n_steps * step(b) + b * prefill)))
    add(strat.target.device, prefill + n_steps * step(cap) / cap)
    # while a request decodes, the b - 1 others turn over once each, and each newcomer's prefill stalls it
    decode_s = n_steps * step(b) + (b - 1) * prefill
    busy_s = prefill + n_steps * step(b) / b  # the target's time per request at batch b
    return prefill, decode_s / max(output - 1, 1), e_tokens, b, busy_s


def _pearl_parallel(world, strat: Pearl, ctx: int, p: int, output: float, add) -> tuple[float, float, float]:
    """(ttft, tpot, tokens per round) of PEARL with pre-verify and/or an adaptive draft length
    (simulator/strategies/pearl.py), as a chain of three kinds of round, times seen by the drafter:
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
    d_dev, t_dev = world.devices[strat.draft.device], world.devices[strat.target.device]
    d_fwd, t_fwd = d_dev.forward[strat.draft.model], t_dev.forward[strat.target.model]
    link = world.link(d_dev.name, t_dev.name) if d_dev.name != t_dev.name else None
    arch = world.scenario.models[strat.draft.model].architecture()
    per_tok = payload_bytes(strat.draft_payload, arch.vocab, arch.dtype_bytes)
    gamma, t_draft, adaptive = strat.gamma, d_fwd.forward_s(1, 1, ctx), strat.draft_length == "adaptive"
    down = link.mean_wire_s(RESULT_BYTES, t_dev.name) if link else 0.0
    flight = link.mean_flight_s() if link else 0.0

    def up(n: int) -> float:  # n drafts on the wire
        return link.mean_wire_s(n * per_tok, d_dev.name) if link else 0.0

    def forward(n: int) -> float:  # the target's forward over the newest token and n drafts
        return t_fwd.forward_s(1, n + 1, ctx) + t_fwd.step_s

    def verify(n: int) -> float:  # that forward with the block's trip up and the verdict's down
        return forward(n) + up(n) + down + 2 * flight

    def made(n: int) -> tuple[float, float]:  # tokens a post-verify of n drafts makes; P(all n accepted)
        pmf = world.acceptance.pmf(n)
        return n * float(pmf[n]) + sum(float(pmf[k]) * (k + 1) for k in range(n)), float(pmf[n])

    # per kind of round (A, P1, P): (seconds, tokens made, target busy s, drafter busy s, drafts sent up)
    if not gamma:  # plain target steps, all of kind A
        weights, rounds = [1.0, 0.0, 0.0], [(verify(0), 1.0, forward(0), 0.0, 0)] * 3
    else:
        g = min(gamma, int(np.ceil(verify(gamma) / t_draft))) if adaptive else gamma
        r_p = max(g * t_draft, verify(g))
        in_flight = t_draft / 2 if gamma * t_draft > verify(g) else 0.0
        if strat.verify == "pre_post":  # the target's forward starts at its verdict, a trip down earlier
            r_a = max(forward(0) - down - flight, in_flight + t_draft + up(1) + flight) + down + flight
            t_a = forward(0)
        else:
            r_a, t_a = in_flight + t_draft + verify(1), forward(1)
        ready = min(gamma + 1, (r_a - in_flight) / t_draft) - 1  # drafts past the first when A ends
        g1 = min(gamma, max(1, round(ready))) if adaptive else gamma
        r_1 = max(0.0, g1 - ready) * t_draft + verify(g1)
        (c_1, f1), (c_p, f) = made(g1), made(g)
        a1 = float(world.acceptance.pmf(1)[1])
        weights = [1 - f, a1 * (1 - f), a1 * f1]
        rounds = [(r_a, 1.0, t_a, min(r_a, (gamma + 1) * t_draft), 1),
                  (r_1, c_1, forward(g1), min(r_1, (g1 + gamma) * t_draft), g1),
                  (r_p, c_p, forward(g), min(r_p, g * t_draft), g)]
    w = np.array(weights) / sum(weights)
    round_s, e_tokens, target_s, draft_s = (float(w @ [rd[i] for rd in rounds]) for i in range(4))
    n_rounds = (output - 1) / e_tokens
    d_prefill = d_fwd.prefill_s(1, p, 0) if gamma else 0.0
    add(f"{d_dev.name}:draft-stream" if link is None else d_dev.name, d_prefill + n_rounds * draft_s)
    add(t_dev.name, t_fwd.prefill_s(1, p, 0) + n_rounds * target_s)
    ttft = d_prefill + t_fwd.prefill_s(1, p, 0)
    if link is not None:
        prompt_up = link.mean_wire_s(p * TOKEN_ID_BYTES, d_dev.name)
        sent = float(w @ [up(rd[4]) for rd in rounds])
        add(f"{link.name}:{link.direction(d_dev.name)}", prompt_up + n_rounds * sent)
        add(f"{link.name}:{link.direction(t_dev.name)}", down * (n_rounds + 1))
        ttft += prompt_up + down + 2 * flight
    return ttft, round_s / e_tokens, e_tokens


def _federated(world, strat: Federated, ctx: int, p: int, output: float, add) -> tuple[float, float, float]:
    """(ttft, tpot, tokens per step): the drafter, then the slowest worker's round trip."""
    from .strategies.federated import upload_bytes

    gamma = strat.gamma
    d_dev = world.devices[strat.draft.device]
    d_fwd = d_dev.forward[strat.draft.model]
    arch = world.scenario.models[strat.draft.model].architecture()
    per_tok = payload_bytes(strat.draft_payload, arch.vocab, arch.dtype_bytes)
    e_tokens = world.acceptance.mean_accepted(gamma) + 1
    n_steps = (output - 1) / e_tokens
    t_draft = d_fwd.forward_s(1, 1, ctx)
    add(d_dev.name, (d_fwd.prefill_s(1, p, 0) if gamma else 0.0) + n_steps * gamma * t_draft)
    prefill_rounds, step_rounds = [], []
    for place in strat.workers:
        w = world.devices[place.device]
        fwd = w.forward[place.model]
        link = world.link(d_dev.name, w.name) if w.name != d_dev.name else None
        verify = fwd.forward_s(1, gamma + 1, ctx) + fwd.step_s
        add(w.name, fwd.prefill_s(1, p, 0) + n_steps * verify)
        hops_p = hops_s = 0.0
        if link is not None:
            d, wn = d_dev.name, w.name
            up_p, down_p = link.mean_wire_s(p * TOKEN_ID_BYTES, d), link.mean_wire_s(upload_bytes(0, strat.top_k), wn)
            up_s, down_s = link.mean_wire_s(gamma * per_tok, d), link.mean_wire_s(upload_bytes(gamma, strat.top_k), wn)
            add(f"{link.name}:{link.direction(d_dev.name)}", up_p + n_steps * up_s)
            add(f"{link.name}:{link.direction(w.name)}", down_p + n_steps * down_s)
            hops_p, hops_s = up_p + down_p + 2 * link.mean_flight_s(), up_s + down_s + 2 * link.mean_flight_s()
        prefill_rounds.append(fwd.prefill_s(1, p, 0) + hops_p)
        step_rounds.append(verify + hops_s)
    ttft = (d_fwd.prefill_s(1, p, 0) if gamma else 0.0) + max(prefill_rounds)
    return ttft, (gamma * t_draft + max(step_rounds)) / e_tokens, e_tokens


def _tree_family(scenario, world, strat, ctx: int, p: int, output: float, add) -> tuple[float, float, float]:
    """(ttft, step_s, tokens_per_step) of tree, staged and self-speculative decoding at context ctx,
    adding each device's and link direction's demand. Tree: step_s = sum over depths i of
    t_draft(n_(i-1)) + t_target(1 + N) + link time; tokens_per_step = 1 + sum_i p_1 ... p_i
    (strategies/tree.py). Staged: the draft phase is the exact expectation, over the inner
    acceptances, of strategies/staged.py's inner steps. Self-speculative: Leviathan's step with
    t_draft = t_target x draft_layers / layers."""
    from .profiles import layer_share
    from .strategies.speculative import draft_length
    from .strategies.tree import mean_tokens_per_step, tree_levels

    t_dev = world.devices[strat.target.device]
    t_fwd = t_dev.forward[strat.target.model]
    if isinstance(strat, SelfSpeculative):
        g = strat.gamma
        d_fwd = layer_share(t_fwd, strat.draft_layers, scenario.models[strat.target.model].architecture().layers)
        e_tokens = world.acceptance.mean_accepted(g) + 1
        step = g * d_fwd.forward_s(1, 1, ctx) + t_fwd.forward_s(1, g + 1, ctx) + t_fwd.step_s
        ttft = add(t_dev.name, t_fwd.prefill_s(1, p, 0))
        add(t_dev.name, step * (output - 1) / e_tokens)
        return ttft, step, e_tokens
    levels, depth = tree_levels(strat.branching), len(strat.branching)
    nodes = sum(levels[1:])
    d_dev = world.devices[strat.draft.device]
    d_fwd = d_dev.forward[strat.draft.model]
    e_tokens = mean_tokens_per_step(world.acceptance, list(strat.branching), strat.top_k_decay)
    n_steps = (output - 1) / e_tokens
    d_prefill = d_fwd.prefill_s(1, p, 0) if depth else 0.0
    if isinstance(strat, Staged):
        d2_fwd = world.devices[strat.draft2.device].forward[strat.draft2.model]
        a = strat.inner_alpha
        after = [0.0] * (depth + 2)  # after[i]: expected draft time to settle levels i..depth
        for i in range(depth, 0, -1):
            h = draft_length(strat.inner_gamma, depth - i + 1)
            cost = sum(d2_fwd.forward_s(1, levels[m - 1], ctx) for m in range(i, i + h))
            cost += d_fwd.forward_s(1, sum(levels[i - 1:i + h]), ctx)
            pmf = [a ** j * (1 - a) for j in range(h)] + [a ** h]  # J accepted of h, iid
            after[i] = cost + sum(pj * after[min(i + j + 1, depth + 1)] for j, pj in enumerate(pmf))
        draft_phase = after[1] if depth else 0.0
        if depth and strat.inner_gamma:
            d_prefill += d2_fwd.prefill_s(1, p, 0)
    else:
        draft_phase = sum(d_fwd.forward_s(1, levels[i - 1], ctx) for i in range(1, depth + 1))
    t_verify = t_fwd.forward_s(1, 1 + nodes, ctx) + t_fwd.step_s
    add(d_dev.name, d_prefill + n_steps * draft_phase)
    add(t_dev.name, t_fwd.prefill_s(1, p, 0) + n_steps * t_verify)
    ttft, step = d_prefill + t_fwd.prefill_s(1, p, 0), draft_phase + t_verify
    link = world.link(d_dev.name, t_dev.name) if d_dev.name != t_dev.name else None
    if link is not None:
        arch = scenario.models[strat.draft.model].architecture()
        up = link.mean_wire_s(nodes * payload_bytes(strat.draft_payload, arch.vocab, arch.dtype_bytes), d_dev.name)
        down = link.mean_wire_s(RESULT_BYTES, t_dev.name)
        prompt_up = link.mean_wire_s(p * TOKEN_ID_BYTES, d_dev.name)
        add(f"{link.name}:{link.direction(d_dev.name)}", prompt_up + up * n_steps)
        add(f"{link.name}:{link.direction(t_dev.name)}", down * (n_steps + 1))
        ttft += prompt_up + down + 2 * link.mean_flight_s()
        step += up + down + 2 * link.mean_flight_s()
    return ttft, step, e_tokens


def _pipeline(scenario, world, strat, ctx: int, p: int, output: float, add) -> tuple[float, float, float]:
    """(ttft, tpot, tokens per step) of a pipeline (strategies/pipeline.py), adding each stage device's
    and link direction's demand. Per step: g t_draft + the g drafts' ids up to the first stage
    + sum over stages of t_stage_i(g + 1) (the target's time on stage i's device x its layer share)
    + the per-step overhead + one activation hop of g + 1 tokens per link between stages + the result's
    hop back to the head; tokens per step E[accepted] + 1 (g = 0 without a draft: autoregressive,
    sum of stage times + (stages - 1) hops + the return hop). PipeInfer is estimated as this
    synchronous pipeline with its draft (an approximate upper bound on its time)."""
    from .strategies.pipeline import Stages

    st = Stages(strat, world)
    draft = strat.draft
    g = strat.gamma if draft is not None else 0
    result = RESULT_BYTES if isinstance(strat, Pipeline) and draft is not None else TOKEN_ID_BYTES
    e_tokens = world.acceptance.mean_accepted(g) + 1 if g else 1.0
    n_steps = (output - 1) / e_tokens
    ttft = step = 0.0
    if g:
        d_dev = world.devices[draft.device]
        d_fwd = d_dev.forward[draft.model]
        ttft += add(d_dev.name, d_fwd.prefill_s(1, p, 0))
        t_drafts = g * d_fwd.forward_s(1, 1, ctx)
        add(d_dev.name, n_steps * t_drafts)
        step += t_drafts
    arch = scenario.models[draft.model].architecture() if draft is not None else None
    per_tok = payload_bytes(strat.draft_payload, arch.vocab, arch.dtype_bytes) if arch is not None else 0

    def hop(link, src: str, nbytes: int, times: float) -> float:
        wire = link.mean_wire_s(nbytes, src)
        add(f"{link.name}:{link.direction(src)}", wire * times)
        return wire + link.mean_flight_s()

    if st.up is not None:
        ttft += hop(st.up, st.head, p * TOKEN_ID_BYTES, 1)
        step += hop(st.up, st.head, g * per_tok, n_steps)
    for i, dev in enumerate(st.devices):
        t_pre, t_step = st.seconds(i, p, 0, prefill=True), st.seconds(i, g + 1, ctx)
        add(dev.name, t_pre + n_steps * t_step)
        ttft, step = ttft + t_pre, step + t_step
        if i < len(st.hops) and st.hops[i] is not None:
            ttft += hop(st.hops[i], dev.name, st.activation_bytes(p), 1)
            step += hop(st.hops[i], dev.name, st.activation_bytes(g + 1), n_steps)
    if st.back is not None:
        ttft += hop(st.back, st.last, result, 1)
        step += hop(st.back, st.last, result, n_steps)
    return ttft, step / e_tokens, e_tokens
