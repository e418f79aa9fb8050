"""Serving with continuous batching: one target serves every request in a running batch.

Requests join and leave the batch between steps (simulator/batching.py decides who runs and
what memory allows; simulator/speculation.py how many tokens each drafts). One step is one SimPy
job: its time comes from the latency model at the batch's size and query tokens:

- decoding requests (batch B, draft lengths g_i, mean KV context c): the draft's forwards, round j
  at batch B_j = #{i: g_i >= j} (one run of g forwards when all g_i are equal), then the target's
  verifying forward at batch B with ceil(mean(g_i + 1)) query tokens, at context c;
- with a token tree per request (`speculation.branching`, as EAGLE and SpecInfer trees are served):
  g_i is the depth of request i's tree, round j feeds the n_(j-1) nodes of level j - 1 of every
  tree at least j deep (batch B_j, query n_(j-1), at context c + n_0 + ... + n_(j-2), as the tree
  strategy's draft does), the verifying forward carries each tree's nodes (ceil(mean(1 + N_(g_i)))
  query tokens, N_g the nodes of the first g levels), a request keeps the KV of its accepted path
  only, and each tree's accepted depth is drawn from the tree's acceptance (strategies/tree.py);
- prompt pieces: a forward of the piece's tokens at its context for the target (and a draft, which
  keeps its own KV cache), less one empty forward t(1, 1, 0) for each piece that shares the
  step's forward with others (the weight read and fixed costs are paid once per step);
- the profile's per-step overhead, once, in a step that decodes.
A draft on the target's device adds its time to the step's job; a draft on a device of its own
(a shared drafter) runs its part as a job there first, the drafted tokens (and new prompts) cross
the link, the target runs, and the results return, in lockstep. Without a draft it is
autoregressive serving (as vLLM or Vidur model it).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from ..batching import MEMORY, PREFILL, Batcher
from ..closed_form import Closed
from ..errors import InputError
from ..fields import Payload, Ref
from ..server import wait_until
from ..speculation import POLICIES, prior_rate
from .base import Placement, StrategySpec
from .speculative import RESULT_BYTES, TOKEN_ID_BYTES, draft_token_bytes
from .tree import TreeDrafts, TreeOption, mean_tokens_per_step, tree_levels


class Speculation(TreeOption):
    """How many tokens each request in a batch drafts per step (simulator/speculation.py)."""

    policy: Literal["fixed", "goodput", "adaptive", "off_under_load"] = Field(
        "fixed", description="fixed: every request drafts gamma; goodput: one length for the batch, 0..gamma, "
        "maximising expected committed tokens per second from the acceptance estimate and the profile "
        "(SmartSpec); adaptive: per request, 2 more after a fully accepted step, 1 fewer after a rejection "
        "(1..gamma); off_under_load: gamma, or 0 while the batch is compute-bound.")
    gamma: int = Field(4, ge=0, le=64, description="Tokens drafted per request per step (fixed, "
                       "off_under_load), or the most (goodput, adaptive); in tokens.")
    compute_bound_ratio: float = Field(1.5, ge=1, allow_inf_nan=False, description="off_under_load: a batch "
                                       "is compute-bound when verifying 2 tokens per request takes more than this "
                                       "many times as long as 1 (unitless).")

    @model_validator(mode="after")
    def _tree_policy(self):
        if self.branching is None:
            return self
        if self.policy == "goodput":
            raise Ref("policy", "goodput weighs a chain's expected tokens; with a tree, use fixed, adaptive "
                      "or off_under_load")
        return self

    def nodes(self) -> list[int]:
        """Tokens a request drafts at each depth 0..gamma: g for a chain, its tree's first g levels' nodes."""
        if self.branching is None:
            return list(range(self.gamma + 1))
        return (np.cumsum(tree_levels(self.branching[:self.gamma])) - 1).tolist()  # the root is committed


class Batched(StrategySpec):
    """Serving with continuous batching (vLLM, Orca): requests join and leave the target's running batch
    between steps, admitted by KV-cache memory; optionally speculative (SmartSpec-style policies), with
    the draft beside the target or on a shared drafter device; see simulator/strategies/batched.py."""

    admits_by_memory: ClassVar[bool] = True
    kind: Literal["batched"] = Field(description="Strategy kind: continuous batching on one target.")
    target: Placement = Field(description="Where the target model runs; every request is served there.")
    draft: Placement | None = Field(None, description="The draft model (speculative decoding for the whole "
                                    "batch): on the target's device, or on a device of its own joined by a link, "
                                    "batched in lockstep. Without it, autoregressive serving.")
    speculation: Speculation = Field(Speculation(), description="Draft length per request and step (with a draft).")
    max_batch: int = Field(64, ge=1, le=4096, description="Most requests admitted at once (running or "
                           "prefilling), in requests.")
    step_tokens: int = Field(2048, ge=1, le=1_000_000, description="Token budget of one step, in tokens: "
                             "separate prefill feeds whole prompts up to it (at least one); chunked prefill fills "
                             "what the decodes leave of it with prompt pieces.")
    prefill: Literal["separate", "chunked"] = Field(
        "separate", description="separate: prompts are prefilled in steps of their own, decodes waiting (vLLM's "
        "default); chunked: each step decodes and feeds prompt pieces alongside (Sarathi-Serve).")
    preemption: Literal["none", "recompute"] = Field(
        "none", description="none: a request reserves KV memory for prompt + output when admitted; recompute: it "
        "holds what it uses, and when memory runs out the newest requests are preempted and later prefill "
        "again.")
    draft_payload: Payload = Field("ids", description="What crosses the link per drafted token to a drafter on "
                                   "another device, as for speculative.")

    rules: ClassVar[str] = "a `speculation.branching` above 1 refuses `trace` acceptance."

    def lookahead_tokens(self) -> int:
        return self.speculation.nodes()[-1] if self.draft is not None else 0

    def check(self, scenario) -> None:
        if self.draft is not None:
            self.speculation.check_tree(scenario)

    def build(self, world):
        return BatchedServer(self, world)

    def estimate(self, f) -> Closed:
        return batched_estimate(f, self)

    def describe(self) -> str:
        places = ", ".join(f"{p.model} on {p.device}" for p in self.placements().values())
        sp = self.speculation
        shape = f"tree {list(sp.branching[:sp.gamma])}" if sp.branching is not None else f"gamma {sp.gamma}"
        spec_part = f", {sp.policy} {shape}" if self.draft is not None else ""
        return f"batched (up to {self.max_batch}, {self.prefill} prefill{spec_part}): {places}"


class BatchedServer:
    def __init__(self, spec, world):
        self.env, self.world = world.env, world
        t = world.devices[spec.target.device]
        self.t_server, self.t_fwd, self.t_name = t.server, t.forward[spec.target.model], t.name
        self.d_fwd = self.d_server = self.link = self.nodes = None
        gamma, sp, accept = 0, spec.speculation, world.acceptance
        if spec.draft is not None and sp.branching is not None:  # a token tree per request
            self.nodes = np.array(sp.nodes(), np.int64)  # drafted tokens at each depth
            tree = TreeDrafts(sp.tree(), sp.gamma, accept, sp.top_k_decay)
            self.levels, self.offsets, accept = tree.levels, tree.offsets, tree.acceptance
        if spec.draft is not None:
            d = world.devices[spec.draft.device]
            self.d_fwd, gamma = d.forward[spec.draft.model], spec.speculation.gamma
            if d.name != t.name:
                self.d_server, self.d_name = d.server, d.name
                self.link = world.link(d.name, t.name)
                self.per_token_bytes = draft_token_bytes(world, spec.draft_payload, spec.draft.model)
        self.capacity, self.capacity_note = kv_capacity(spec, world)
        lookahead = gamma if self.nodes is None else int(self.nodes[gamma])
        self.batcher = Batcher(spec.max_batch, self.capacity, lookahead, MEMORY[spec.preemption], PREFILL[spec.prefill],
                               spec.step_tokens, self.nodes)
        self.policy = POLICIES[spec.speculation.policy](gamma, self.decode_cost, self.t_fwd.forward_s,
                                                       spec.speculation.compute_bound_ratio,
                                                       prior_rate(world.acceptance, gamma))
        self.draw_many = accept.draw_many
        self.done: dict[int, object] = {}
        self.wake = None
        world.env.process(self.loop())

    # ------------------------------------------------------------ costs, from the latency model

    def draft_s(self, gammas: np.ndarray, context: int, top: int, low: int) -> float:
        """The draft's forwards for draft lengths `gammas`, whose largest is `top` and smallest `low`
        (the step knows them, and a reduction over so few costs more than the forward's look-up)."""
        if top == 0 or self.d_fwd is None:
            return 0.0
        if self.nodes is not None:  # trees: level j feeds level j - 1's nodes of every tree at least j deep
            at_least = [gammas.size] * (top + 1) if low == top else \
                np.cumsum(np.bincount(gammas, minlength=top + 1)[::-1])[::-1].tolist()
            return self._levels_s(at_least, top, context)
        if low == top:
            return self.d_fwd.consecutive_s(gammas.size, 1, context, top)
        at_least = np.cumsum(np.bincount(gammas, minlength=top + 1)[::-1])[::-1].tolist()  # #{i: g_i >= j}
        return sum(self.d_fwd.forward_s(at_least[j], 1, context + j - 1) for j in range(1, top + 1))

    def _levels_s(self, at_least: list[int], top: int, context: int) -> float:
        """A tree's draft forwards: level j feeds level j - 1's nodes of the at_least[j] trees at least j deep."""
        return sum(self.d_fwd.forward_s(at_least[j], self.levels[j - 1], context + self.offsets[j - 1])
                   for j in range(1, top + 1))

    def decode_cost(self, batch: int, g: int, context: int) -> float:
        """A decode step of `batch` requests drafting g each (for the goodput policy, which asks for
        every g each step): draft_s and the verify of costs() at equal lengths, without building their array."""
        if g == 0 or self.d_fwd is None:
            draft = 0.0
        elif self.nodes is not None:
            draft = self._levels_s([batch] * (g + 1), g, context)
        else:
            draft = self.d_fwd.consecutive_s(batch, 1, context, g)
        drafted = batch * (g if self.nodes is None else int(self.nodes[g]))
        return draft + self.t_fwd.forward_s(batch, -(-(drafted + batch) // batch), context) + self.t_fwd.step_s

    @staticmethod
    def prefill_s(fwd, k: int, tokens: int, context: int, shared: bool) -> float:
        """The step's k prompt pieces (`tokens` in all, on `context` KV tokens in all) as one forward
        of k sequences at their mean length and context (as measured when k prompts prefill together:
        compute-bound once the tokens are many), less one empty forward when decoding requests share
        the pass (one weight read)."""
        if fwd is None or not k:
            return 0.0
        together = fwd.prefill_s(k, max(1, round(tokens / k)), round(context / k))
        return together - (fwd.forward_s(1, 1, 0) if shared else 0.0)

    # ------------------------------------------------------------ the server

    def serve(self, r):
        if self.batcher.need(r) > self.capacity:
            raise InputError(self.world.source, "workload", f"request {r.id} needs a KV cache of "
                             f"{self.batcher.need(r)} tokens (prompt + output + lookahead), more than "
                             f"{self.capacity_note}")
        done = self.done[r.id] = self.env.event()
        self.batcher.waiting.append(r)
        if self.wake is not None:
            self.wake.succeed()
            self.wake = None
        yield done

    def loop(self):
        """schedule, run, record.

        On one device the loop alone uses its server: it books each step's job and keeps the clock
        itself, `now`, each time the sum SimPy would form (start + the step's seconds). While a step
        ends before anything else in the run happens (env.peek(): the next arrival, think time or
        end of the run), nothing can join, leave or look at the batch meanwhile, so it waits no
        event; it brings SimPy's clock to `now` (wait_until: exactly) before a step that something
        else happens during, which then waits its timeout as before, and before it hands finished
        requests back. The steps, their draws and records are those of a timeout per step."""
        env, batcher, policy = self.env, self.batcher, self.policy
        alone, now = self.d_server is None, env.now
        while True:
            step = batcher.schedule(policy)
            if step is None:  # the batch emptied as its last requests finished: the clock was brought to now then
                self.wake = env.event()
                yield self.wake
                now = env.now
                continue
            start = now
            if alone:
                seconds = sum(self.costs(step))
                self.t_server.book(start, seconds, "batch")
                if seconds > 0:
                    now = start + seconds
                    if now >= env.peek():  # something else happens by the step's end: wait for it
                        if start > env.now:
                            yield from wait_until(env, start)
                        yield env.timeout(seconds)
            else:
                yield from self.run(step)
                now = env.now
            accepted = self.draw_many(step.gammas, step.top) if step.drafted else step.gammas  # zeros
            if step.drafted:
                policy.observe(batcher.gamma, step.decode, step.gammas, accepted)
            firsts, finished, made = batcher.commit(step, accepted)
            for rec in firsts:
                if math.isnan(rec.first_token_s):
                    rec.first_token_s = now
            if finished:
                if now > env.now:
                    yield from wait_until(env, now)
                for rec in finished:
                    rec.finish_s = now
                    self.done.pop(rec.id).succeed()
            self.world.batches.append((start, now, step.decode.size, step.prompt_tokens, step.drafted,
                                       int(np.add.reduce(accepted)) if step.drafted else 0, made, step.preempted))

    def costs(self, step) -> tuple[float, float]:
        """The step's seconds on the draft's forwards and on the target's."""
        b, draft, target = step.decode.size, 0.0, 0.0
        if step.pieces:
            k, tokens, piece_context = len(step.pieces), step.prompt_tokens, step.piece_context
            draft = self.prefill_s(self.d_fwd, k, tokens, piece_context, b > 0)
            target = self.prefill_s(self.t_fwd, k, tokens, piece_context, b > 0)
        if step.drafted:
            draft += self.draft_s(step.gammas, step.context, step.top, step.low)
        if b:  # the per-step overhead belongs to decoding steps, as for one stream
            target += self.t_fwd.forward_s(b, -(-(step.drafted + b) // b), step.context) + self.t_fwd.step_s
        return draft, target

    def run(self, step):
        """The step on two devices: the draft's forwards, its link, the target's."""
        b = step.decode.size
        draft, target = self.costs(step)
        yield from self.d_server.serve(draft, "draft")
        if self.link:
            up = step.drafted * self.per_token_bytes + step.prompt_tokens * TOKEN_ID_BYTES
            yield from self.link.send(self.d_name, up)
        yield from self.t_server.serve(target, "verify")
        if self.link:
            yield from self.link.send(self.t_name, (b + len(step.pieces)) * RESULT_BYTES)


def kv_capacity(spec, world) -> tuple[int, str]:
    """KV-cache tokens that fit beside the weights on every device the batch runs on, and a phrase
    naming the tightest (for errors)."""
    scenario, best = world.scenario, None
    roles = [spec.target] + ([spec.draft] if spec.draft is not None else [])
    for dev in {p.device for p in roles}:
        archs = [scenario.models[p.model].architecture() for p in roles if p.device == dev]
        memory = world.devices[dev].memory_bytes
        weights = sum(a.weight_bytes() for a in archs)
        if weights >= memory:
            raise InputError(world.source, f"devices.{dev}.memory_gb", f"the weights of the models on it "
                             f"({weights / 1e9:.1f} GB) leave no room for a KV cache in {memory / 1e9:.1f} GB")
        tokens = int((memory - weights) // sum(a.kv_bytes_per_token() for a in archs))
        if best is None or tokens < best[0]:
            best = (tokens, f"device {dev} holds beside its weights ({tokens} tokens)")
    return best


APPROXIMATE = ("batched: at the mean batch from Little's law and mean lengths; queueing for admission, prefill "
               "steps stalling decodes and policies other than fixed are simulated only")


def batched_estimate(f, spec) -> Closed:
    """Continuous batching at the steady batch b: a decode step of b requests drafting g each costs
    step(b) = g draft forwards + a verify over g + 1 tokens + the step overhead, and commits E[K] + 1
    per request. While a request decodes, the b - 1 others turn over once each and every newcomer's
    prefill stalls the batch, so a request spends (output - 1) / (E[K] + 1) x step(b) + (b - 1) x
    prefill decoding. b is the fixed point of Little's law, b = arrival rate x (that + prefill),
    capped by max_batch and by the KV memory (prompt + output + g + 1 tokens a request); a closed
    loop runs min(users, cap). Capacity is at the cap; the utilization is the busy time at b."""
    ctx, p, output, reqs = f.ctx, f.prompt, f.output, f.requests
    t_fwd = f.forward(spec.target)
    d_fwd = f.forward(spec.draft) if spec.draft is not None else None
    sp = spec.speculation
    g = sp.gamma if d_fwd is not None else 0
    tree = g and sp.branching is not None
    if tree:  # a token tree per request: its nodes verified, its accepted depth drawn (strategies/tree.py)
        levels, nodes = tree_levels(sp.branching[:g]), sp.nodes()[g]
        e_tokens = mean_tokens_per_step(f.world.acceptance, list(sp.branching[:g]), sp.top_k_decay)
    else:
        nodes = g
        e_tokens = f.world.acceptance.mean_accepted(g) + 1 if g else 1.0
    held = p + (output / 2 if spec.preemption == "recompute" else output) + nodes + 1
    cap = int(max(1, min(spec.max_batch, kv_capacity(spec, f.world)[0] // held)))

    offsets = np.cumsum([0] + levels).tolist() if tree else []

    def step(b: float) -> float:
        b = int(round(b))
        if tree:
            draft = sum(d_fwd.forward_s(b, levels[j - 1], ctx + offsets[j - 1]) for j in range(1, g + 1))
        else:
            draft = d_fwd.consecutive_s(b, 1, ctx, g) if g else 0.0
        return draft + t_fwd.forward_s(b, nodes + 1, ctx) + t_fwd.step_s

    prefill = t_fwd.prefill_s(1, p, 0) + (d_fwd.prefill_s(1, p, 0) if g else 0.0)
    n_steps = (output - 1) / e_tokens
    arrival = f.scenario.workload.arrival
    if arrival.kind == "closed_loop":
        b = float(min(arrival.users, cap))
    else:
        rate, b = len(reqs.arrivals_s) / max(reqs.arrivals_s[-1], 1e-12), 1.0
        for _ in range(60):
            b = min(float(cap), max(1.0, rate * (n_steps * step(b) + b * prefill)))
    f.add(spec.target.device, prefill + n_steps * step(cap) / cap)
    # while a request decodes, the b - 1 others turn over once each, and each newcomer's prefill stalls it
    decode_s = n_steps * step(b) + (b - 1) * prefill
    busy_s = prefill + n_steps * step(b) / b  # the target's time per request at batch b
    return Closed(prefill, decode_s / max(output - 1, 1), {"tokens_per_step": e_tokens, "batch": b,
                                                          "approximate": APPROXIMATE},
                  busy_s={spec.target.device: busy_s})
