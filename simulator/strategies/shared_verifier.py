"""Edge drafters sharing one verifier (distributed speculative decoding: DSD, SLED, GoodSpeed).

Each request drafts on one edge (by `assign`: user u's requests on edges[u mod n], request i on
edges[i mod n], or the edge of the highest goodput so far), with that edge's draft model and
gamma, and sends its drafts over that edge's link; a verifier process on the target device takes waiting verifications in
batches and runs one target forward per batch: batch = the number taken, query = the longest
draft + 1, context = the longest context among them (the batch is padded to it). Prefills run
on the target one request at a time, between batches, first come first served. Which waiting
verifications a batch takes is a plain decision (`choose`), free of SimPy; so is the goodspeed
policy's allocation of the next round's draft lengths (`allocate`).
"""

from __future__ import annotations

import heapq
import math
from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import Field

from ..closed_form import Closed
from .. import workload as wl
from .. import acceptance as acc
from ..fields import Payload, Prob, Ref, Strict
from ..server import wait_until
from .base import Placed, Placement, Role, StrategySpec
from .speculative import RESULT_BYTES, Lane, SpeculativeProcess, chain_estimate, draft_token_bytes, prelude


class Edge(Strict):
    """One edge drafter: its device, and the draft model and gamma it runs (the strategy's by default)."""

    device: str = Field(description="Key of the edge device in `devices`.")
    draft_model: str | None = Field(None, description="Key of the draft model in `models` this edge runs; "
                                    "default: the strategy's draft_model.")
    gamma: Annotated[int, Field(ge=0, le=64)] | Literal["auto"] | None = Field(
        None, description="Tokens this edge drafts per step; auto: the g of 0 to the strategy's gamma that "
        "makes this edge's step alone the most tokens per second (E[tokens](g) / (g draft forwards + a "
        "verification of g + 1 + the link's two messages, at the mean prompt's context), as GoodSpeed gives "
        "each draft server its own length); default: the strategy's gamma.")
    alpha: Prob | None = Field(None, description="Per-token acceptance probability of this edge's drafts "
                               "(iid; a vocabulary bridge's acceptance_factor still applies), for a draft model "
                               "that agrees with the target more or less than the others; default: the "
                               "scenario's acceptance.")
    reach: list[int] | None = Field(None, min_length=1, description="Verifiers this edge can send to, by index "
                                    "(0: target, i: verifiers[i - 1]); default: all.")


class SharedVerifier(StrategySpec):
    """Edge devices draft for their own users (DSD, SLED, GoodSpeed); their drafts cross each
    edge's link to one verifier, which verifies the waiting drafts in batches."""

    rules: ClassVar[str] = "each edge's `reach` names verifiers 0 (target) to len(verifiers)."
    kind: Literal["shared_verifier"] = Field(description="Strategy kind: edge drafters, one batching verifier.")
    draft_model: str = Field(description="Key of the draft model in `models`, run on every edge that names "
                             "none of its own.")
    edges: list[str | Edge] = Field(min_length=1, description="Edge drafters: a device key, or {device, "
                                    "draft_model, gamma, alpha, reach} for an edge with its own draft model, "
                                    "gamma, acceptance or verifiers.")
    assign: Literal["user", "round_robin", "learned"] = Field(
        "user", description="Which edge drafts a request: user, user u's requests on edges[u mod n] (open "
        "loops: request u); round_robin, request i on edges[i mod n]; learned, each edge once in turn, then "
        "the edge whose finished requests made the most output tokens per second in the system (ties: "
        "the first), as a request choosing among drafters by what it observed (SPIN).")
    target: Placement = Field(description="Where the verifier runs (verifier 0).")
    verifiers: list[Placement] = Field([], description="More verifiers beside target (verifier i is "
                                       "verifiers[i - 1]), each batching its own queue; an edge reaches each "
                                       "one over its own link.")
    router: Literal["round_robin", "random", "jsq", "power_of_two"] = Field(
        "round_robin", description="Which verifier serves a request (its prefill and every verification), "
        "among those its edge reaches: round_robin, over the requests; random, uniformly (seeded); jsq, the "
        "one with the fewest requests in progress (ties: the first); power_of_two, the fewer in progress of "
        "two drawn at random.")
    gamma: int = Field(4, ge=0, le=64, description="Tokens drafted per step.")
    policy: Literal["fcfs", "max_batch", "fair", "proportional", "goodspeed"] = Field(
        "fcfs", description="Which waiting verifications the free verifier takes: fcfs, the oldest up to "
        "max_batch; max_batch, the same after waiting up to max_wait_ms for a full batch; fair, the users "
        "with the lowest goodput so far first; proportional, a gradient scheduler for the sum over edges of "
        "log goodput: the highest expected tokens of the verification over its edge's goodput so far "
        "(tokens it committed / time since the start) first; goodspeed, GoodSpeed's rounds: the verifier "
        "waits for a verification from every request in progress on it (at most max_batch; at most "
        "max_wait_ms when that is above 0), verifies them in one batch, and sets each one's next draft "
        "length so that the round's verify_tokens go where they raise the sum over edges of log goodput "
        "most (`allocate`), each edge's gamma its most.")
    max_batch: int = Field(8, ge=1, le=1024, description="Most verifications in one batched target forward.")
    max_wait_ms: float = Field(0.0, ge=0, allow_inf_nan=False, description="max_batch policy: longest wait "
                               "for a full batch, in ms; goodspeed: longest wait for a full round, in ms (0: "
                               "no limit).")
    verify_tokens: int | None = Field(None, ge=1, le=65536, description="goodspeed policy (required there): "
                                      "the verifier's capacity per round that GoodSpeed allocates, in tokens: "
                                      "the draft lengths it sets for a round's verifications add up, with one "
                                      "token more each, to at most this (each at least 0 drafts). The batch's "
                                      "forward is still timed padded, at its longest draft + 1.")
    draft_payload: Payload = Field(
        "ids", description="What crosses the link per drafted token, as for speculative.")

    def edge_specs(self) -> list[Edge]:
        """Every edge with its draft model and gamma filled in."""
        return [Edge(device=e, draft_model=self.draft_model, gamma=self.gamma) if isinstance(e, str) else
                e.model_copy(update={"draft_model": e.draft_model or self.draft_model,
                                     "gamma": self.gamma if e.gamma is None else e.gamma})
                for e in self.edges]

    def lookahead_tokens(self) -> int:
        return max(self.gamma if e.gamma == "auto" else e.gamma for e in self.edge_specs())

    def verifier_keys(self) -> list[str]:
        """The placement key of each verifier, in index order."""
        return ["target"] + [f"verifiers.{i}" for i in range(len(self.verifiers))]

    def reach_of(self, edge: Edge) -> list[int]:
        return edge.reach if edge.reach is not None else list(range(1 + len(self.verifiers)))

    def placements(self) -> dict[str, Placed]:
        drafts = {f"edges.{i}": Placed(e.draft_model, e.device, Role.DRAFT) for i, e in enumerate(self.edge_specs())}
        more = {f"verifiers.{i}": v.placed(Role.TARGET) for i, v in enumerate(self.verifiers)}
        return drafts | {"target": self.target.placed(Role.TARGET)} | more

    def exchanges(self) -> list[tuple[str, str]]:
        keys = self.verifier_keys()
        return [(f"edges.{i}", keys[j]) for i, e in enumerate(self.edge_specs()) for j in self.reach_of(e)
                if 0 <= j < len(keys)]

    def check(self, scenario) -> None:
        n = 1 + len(self.verifiers)
        if self.policy == "goodspeed" and self.verify_tokens is None:
            raise Ref("strategy.verify_tokens", "policy goodspeed allocates verify_tokens per round: give it "
                      "(tokens, e.g. max_batch x (gamma + 1) / 2)")
        for i, e in enumerate(self.edges):
            if not isinstance(e, str) and e.reach is not None and not all(0 <= j < n for j in e.reach):
                raise Ref(f"strategy.edges.{i}.reach", f"verifier indices are 0 (target) to {n - 1}; got {e.reach}")

    def build(self, world):
        return SharedVerifierProcess(self, world)

    def estimate(self, f) -> Closed:
        """Speculative's step with the first edge standing for all (identical edges, each serving
        1/n of the users; edges of other draft models, gammas or acceptance are not told apart here) and every
        verification riding in a full batch of min(max_batch, users)."""
        batch = min(self.max_batch, getattr(f.scenario.workload.arrival, "users", self.max_batch))
        return chain_estimate(f, self, self.placements()["edges.0"], len(self.edges), batch)

    def describe(self) -> str:
        return (f"shared verifier, gamma {self.gamma}: {self.draft_model} on {len(self.edges)} edge device(s) "
                f"({self.assign} assignment), "
                f"{self.target.model} on {self.target.device} in {self.policy} batches of up to {self.max_batch}")


def choose(waiting: list[tuple], policy: str, max_batch: int, goodput: dict[int, float], score=None) -> list[int]:
    """Indices of the waiting verifications (oldest first) that the next batch takes.
    fcfs and max_batch: the oldest max_batch; fair: the max_batch whose users have the lowest
    goodput so far; proportional: the max_batch of the highest score(verification) (ties: oldest first)."""
    order = range(len(waiting))
    if policy == "fair":
        order = sorted(order, key=lambda i: (goodput.get(waiting[i][0].user, 0.0), i))
    elif policy == "proportional":
        order = sorted(order, key=lambda i: (-score(waiting[i]), i))
    return sorted(list(order)[:max_batch])


def allocate(weights: list[float], gains: list[list[float]], budget: int) -> list[int]:
    """Draft lengths for one round's verifications (GoodSpeed's allocation, a plain decision): each
    verification costs its drafts + 1 tokens of `budget`; from no drafts, each token left goes to the
    verification whose weighted gain weights[i] x gains[i][g_i] is the largest (ties: the first), while
    a gain is above 0; len(gains[i]) caps g_i. gains[i][g] = E[tokens](g + 1) - E[tokens](g) = P(K >= g + 1)
    never rises with g, so the greedy maximises sum of weights[i] x E[tokens_i](g_i) exactly: with
    weights 1 / (each edge's goodput so far), the gradient step towards the largest sum of log goodput.
    A weight of inf (an edge with nothing yet) ranks above every finite one, among them by gain.
    Each verification's next gain waits in a heap: tokens x log(verifications), not their product."""
    g = [0] * len(weights)

    def entry(i: int) -> tuple | None:  # the heap's key of verification i's next token (smallest first)
        row = gains[i]
        if g[i] >= len(row) or row[g[i]] <= 0:
            return None
        w = weights[i]
        return (-1, -row[g[i]], i) if w == math.inf else (0, -w * row[g[i]], i)

    heap = [e for i in range(len(weights)) if (e := entry(i)) is not None]
    heapq.heapify(heap)
    for _ in range(budget - len(weights)):
        if not heap:
            break
        i = heapq.heappop(heap)[2]
        g[i] += 1
        if (e := entry(i)) is not None:
            heapq.heappush(heap, e)
    return g


def gradient_score(expected_tokens: float, edge_tokens: int, elapsed_s: float) -> float:
    """A verification's weight under proportional fairness: d/dx of log x at its edge's goodput x
    (tokens so far over time so far) times the tokens it is expected to add; an edge that has made
    nothing yet comes first."""
    x = edge_tokens / elapsed_s if elapsed_s > 0 else 0.0
    return expected_tokens / x if x > 0 else math.inf


class EdgeTally:
    """Finished requests of one edge (or user): how many, their output tokens and seconds in the system."""

    __slots__ = ("requests", "tokens", "seconds")

    def __init__(self) -> None:
        self.requests, self.tokens, self.seconds = 0, 0, 0.0

    def add(self, tokens: int, seconds: float) -> None:
        self.requests += 1
        self.tokens += tokens
        self.seconds += seconds

    @property
    def goodput(self) -> float | None:
        """Output tokens per second in the system (None before any request finished, or in no time)."""
        return self.tokens / self.seconds if self.seconds > 0 else None


def best_gamma(world, edge: Edge, spec, accept) -> int:
    """The g of 0..spec.gamma with the most expected tokens per second of this edge's step alone:
    (E[accepted](g) + 1) / (g draft forwards + a verification of g + 1 tokens + step_ms + each
    link message's wire time and latency), at the mean prompt length as context (ties: the smaller g).
    A plain decision from the latency tables and the acceptance model's mean: no random draw."""
    d = world.devices[edge.device]
    t = world.devices[spec.target.device]
    d_fwd, t_fwd = d.forward[edge.draft_model], t.forward[spec.target.model]
    link = world.link(edge.device, t.name) if edge.device != t.name else None
    per_token = draft_token_bytes(world, spec.draft_payload, edge.draft_model)
    ctx = round(wl.mean(world.requests.prompts))  # as the closed form takes it

    def rate(g: int) -> float:
        step = (d_fwd.consecutive_s(1, 1, ctx, g) if g else 0.0) + t_fwd.forward_s(1, g + 1, ctx) + t_fwd.step_s
        if link is not None:
            step += link.transfer_s(g * per_token, edge.device) + link.transfer_s(RESULT_BYTES, t.name)
            step += 2 * link.latency_s
        return (accept.mean_accepted(g) + 1) / step if step > 0 else math.inf

    return max(range(spec.gamma + 1), key=lambda g: (rate(g), -g))


def jain(x: list[float]) -> float | None:
    """Jain's fairness index (sum x)^2 / (n sum x^2): 1 when all are equal, 1/n when one has all."""
    return sum(x) ** 2 / (len(x) * sum(v * v for v in x)) if x and any(x) else None


def assign(policy: str, r, served: list[EdgeTally], assigned: int) -> int:
    """The edge that drafts request r (a plain decision): by user, round robin over the requests
    given an edge so far, or learned: edges never tried first, in order; then the best goodput of
    finished requests (ties: the first edge); before any has finished, round robin."""
    n = len(served)
    if policy == "user":
        return r.user % n
    if policy == "round_robin":
        return r.id % n
    if assigned < n:
        return assigned
    scores = [t.goodput for t in served]
    if all(g is None for g in scores):
        return assigned % n
    return max(range(n), key=lambda i: (scores[i] is not None, scores[i] or 0.0, -i))


def hurry(v) -> None:
    """Resume the verifier waiting for a full batch now: its plain event succeeds, or its window's
    timeout hands the verifier over to an event that succeeds now (the timeout still ends in its
    time, waking no one): one event, where waiting on the window or the batch would take two."""
    w, v.full = v.full, None
    if not w.triggered:
        w.succeed()
        return
    now = w.env.event()
    now.callbacks, w.callbacks = w.callbacks, []
    now.succeed()


class Verifier:
    """One verifier: its device's server and forward times, its queue of verifications (record,
    drafted, context, verdict event), the events its process waits on (any work; a full batch),
    and its requests in progress and in all."""

    def __init__(self, server, fwd) -> None:
        self.server, self.fwd = server, fwd
        self.waiting: list[tuple] = []
        self.wake = self.full = None
        self.gathered = False  # the idle wait was turned into the wait for a fuller batch (target_verify)
        self.ahead: list | None = None  # a batch taken and its verification booked as its window began
        self.in_progress = self.requests = 0


def route(router: str, r, in_progress: list[int], rng) -> int:
    """Which of the reachable verifiers (their requests in progress, in index order) serves request r."""
    n = len(in_progress)
    if n == 1:
        return 0
    if router == "round_robin":
        return r.id % n
    if router == "random":
        return int(rng.integers(n))
    if router == "jsq":
        return min(range(n), key=lambda j: (in_progress[j], j))
    a, b = (int(x) for x in rng.choice(n, size=2, replace=False))  # power_of_two
    return min((a, b), key=lambda j: (in_progress[j], j))


class SharedVerifierProcess(SpeculativeProcess):
    """Speculative's step with each user's drafter and link its edge's, and the verification a
    place in the verifier's queue: the batch the verifier takes it in draws its accepted count and
    posts its verdict down the link (`deliver`), so the request waits once for both."""

    verify_brings_result = True

    def __init__(self, spec, world):
        self.env, self.spec, self.steps, self.acceptance = world.env, spec, world.steps, world.acceptance
        edges = spec.edge_specs()
        self.accepts = [edge_acceptance(world, e) for e in edges]  # each edge's draws
        self.gammas = [e.gamma if e.gamma != "auto" else best_gamma(world, e, spec, a) for e, a in zip(edges, self.accepts)]
        self.depth = max(self.gammas)
        self.sent = list(range(self.depth + 1))
        targets = [spec.target, *spec.verifiers]
        self.verifiers = [Verifier(world.devices[v.device].server, world.devices[v.device].forward[v.model])
                          for v in targets]
        self.t_server, self.t_fwd = self.verifiers[0].server, self.verifiers[0].fwd
        self.token_bytes = [draft_token_bytes(world, spec.draft_payload, e.draft_model) for e in edges]
        self.reach = [spec.reach_of(e) for e in edges]
        self.lanes = [{j: Lane(p.server, p.forward, p.link, p.name, p.link, targets[j].device)
                       for j in reach for p in [world.endpoint(e.device, e.draft_model, targets[j].device)]}
                      for e, reach in zip(edges, self.reach)]
        # per edge and verifier: the verdict's link down, its sender, and whether its wire loses messages
        self.posts = [{j: (ln.down, ln.down_from, ln.down is not None and ln.down.wire[ln.down.direction(ln.down_from)].lossy)
                       for j, ln in lanes.items()} for lanes in self.lanes]
        self.rng = world.routing
        self.edge_of: dict[int, int] = {}  # request id -> the edge drafting it, while it is served
        self.verifier_of: dict[int, int] = {}  # request id -> the index of the verifier serving it, likewise
        self._assigned = 0  # requests given an edge so far
        self.served = [EdgeTally() for _ in edges]  # per edge, its finished requests
        self.users: dict[int, EdgeTally] = {}  # per user, likewise (for Jain's index)
        self.goodput: dict[int, float] = {}  # user -> committed tokens per second in system so far
        self.edge_tokens = [0] * len(edges)  # tokens each edge's requests committed so far
        self._done: dict[int, int] = {}  # request id -> tokens it had committed at its last step
        # only the goodput policies read what a step committed: the others skip the call per step
        self.on_commit = {"fair": self._user_goodput, "proportional": self._edge_goodput,
                          "goodspeed": self._edge_goodput}.get(spec.policy)
        self.rounds = spec.policy == "goodspeed"
        self.most, self.window_s = spec.max_batch, spec.max_wait_ms / 1000
        self.windowed = spec.policy == "max_batch" and spec.max_wait_ms > 0  # max_batch's window applies
        if self.rounds:  # draft lengths set per round: serve asks depth_of before every step
            self.steady = False
            self.next_depth: dict[int, int] = {}  # request id -> its next step's draft length
            self.gains = [[a.mean_accepted(g + 1) - a.mean_accepted(g) for g in range(cap)]
                          for a, cap in zip(self.accepts, self.gammas)]
            self.drafted = [0] * len(edges)  # per edge: drafts verified, and verifications
            self.verified = [0] * len(edges)
        for v in self.verifiers:
            world.env.process(self._verifier(v))

    def lane(self, r) -> Lane:
        i = self.edge_of.get(r.id)
        if i is None:
            i = self.edge_of[r.id] = assign(self.spec.assign, r, self.served, self._assigned)
            self._assigned += 1
            reach = self.reach[i]
            j = self.verifier_of[r.id] = reach[route(self.spec.router, r,
                                                     [self.verifiers[k].in_progress for k in reach], self.rng)]
            self.verifiers[j].in_progress += 1
            self.verifiers[j].requests += 1
        return self.lanes[i][self.verifier_of[r.id]]

    def prefill(self, r, lane: Lane):
        v = self.verifiers[self.verifier_of[r.id]]
        return prelude(r, lane, self.depth_of(r) > 0,
                       lambda prompt: v.server.serve(v.fwd.prefill_s(1, prompt, 0), "prefill"), self.result_bytes)

    def depth_of(self, r) -> int:
        if self.rounds:
            return self.next_depth.get(r.id, self.gammas[self.edge_of[r.id]])
        return self.gammas[self.edge_of[r.id]]

    def token_bytes_of(self, r) -> int:
        return self.token_bytes[self.edge_of[r.id]]

    def serve(self, r):
        yield from super().serve(r)
        v = self.verifiers[self.verifier_of.pop(r.id)]
        v.in_progress -= 1
        if self.rounds:  # one fewer to wait for: the round may be complete now
            self.next_depth.pop(r.id, None)
            if v.full is not None and v.waiting and len(v.waiting) >= min(self.most, v.in_progress):
                hurry(v)
        self._done.pop(r.id, None)
        seconds, tokens = r.finish_s - r.arrival_s, r.output_tokens
        self.served[self.edge_of.pop(r.id)].add(tokens, seconds)
        self.users.setdefault(r.user, EdgeTally()).add(tokens, seconds)

    def report(self) -> dict:
        """The report's `fleet` block: per edge its device, draft model, gamma, requests, output tokens and
        goodput (output tokens over its requests' seconds in the system), and under goodspeed its mean
        draft length per verification; Jain's index of the users' goodput ((sum x)^2 / (n sum x^2): 1
        when all are equal)."""
        edges = {}
        for i, (e, t) in enumerate(zip(self.spec.edge_specs(), self.served)):
            edges[f"{i}"] = {"device": e.device, "draft_model": e.draft_model, "gamma": self.gammas[i],
                             "requests": t.requests, "output_tokens": t.tokens, "goodput_tokens_per_s": t.goodput}
            if self.rounds:
                edges[f"{i}"]["mean_gamma"] = self.drafted[i] / self.verified[i] if self.verified[i] else None
        verifiers = {f"{j}": {"device": t.device, "requests": v.requests}
                     for j, (t, v) in enumerate(zip([self.spec.target, *self.spec.verifiers], self.verifiers))}
        return {"fleet": {"edges": edges, "verifiers": verifiers,
                          "users_jain_index": jain([t.goodput for t in self.users.values() if t.goodput is not None])}}

    def target_verify(self, r, g: int, n: int, context: int):
        """Queue for r's verifier; returns the accepted count once the verdict has come down (see
        `deliver`: delivered there, or by the request itself here)."""
        v = self.verifiers[self.verifier_of[r.id]]
        verdict = self.env.event()
        v.waiting.append((r, g, context, verdict))
        if v.wake is not None:  # the verifier idles: this verification starts its next batch
            wake, v.wake = v.wake, None
            # and max_batch's window, in the idle wait's place: one event (a round is judged by the
            # verifier as it wakes, after whatever else happens at this instant: a request that ends
            # now and the next that starts now, as a closed loop's do)
            if not self.rounds and self._gathers(v):
                full = self._ahead(v) or self._gather()
                if v.ahead is None:
                    v.full = full
                full.callbacks, wake.callbacks = wake.callbacks, []
                v.gathered = True
            else:
                wake.succeed()
        elif v.full is not None and len(v.waiting) >= (min(self.most, v.in_progress) if self.rounds else self.most):
            hurry(v)
        k = yield verdict
        if k.__class__ is tuple:  # deliver could not schedule the arrival itself
            k, t = k
            if t is None:
                down, down_from, _ = self.posts[self.edge_of[r.id]][self.verifier_of[r.id]]
                yield from down.send(down_from, self.result_bytes)
            elif t > self.env.now:
                yield from wait_until(self.env, t)
        return k

    def deliver(self, r, verdict, k: int) -> None:
        """r's verdict (k accepted), posted down its link as the batch ends: on a wire that loses
        nothing the message is reserved and its flight drawn now, as the request would have at
        this instant, and the request resumes once, at its arrival; a lossy wire (retransmissions
        wait on the wire) or an arrival a single timeout cannot land on exactly (wait_until's case)
        leave the rest to the request."""
        down, down_from, lossy = self.posts[self.edge_of[r.id]][self.verifier_of[r.id]]
        if down is None:
            verdict.succeed(k)
            return
        if lossy:
            verdict.succeed((k, None))
            return
        t, now = down.post(down_from, self.result_bytes), self.env.now
        if now < t <= 2 * now:  # one timeout lands exactly on t: it resumes the request in the verdict's place
            arrival = self.env.timeout(t - now, k)
            arrival.callbacks, verdict.callbacks = verdict.callbacks, []
        else:
            verdict.succeed((k, t))

    def _user_goodput(self, r, done: int) -> None:
        self.goodput[r.user] = done / max(self.env.now - r.arrival_s, 1e-12)

    def _edge_goodput(self, r, done: int) -> None:
        self.edge_tokens[self.edge_of[r.id]] += done - self._done.get(r.id, 0)
        self._done[r.id] = done

    def _score(self, waiting: tuple) -> float:
        r, g = waiting[0], waiting[1]
        i = self.edge_of[r.id]
        return gradient_score(self.accepts[i].mean_accepted(g) + 1, self.edge_tokens[i], self.env.now)

    def _gathers(self, v: Verifier) -> bool:
        """Whether the verifier waits for a fuller batch before it takes one: a round for a verification
        of every request in progress on it, max_batch's window for a full batch."""
        if self.rounds:
            return len(v.waiting) < min(self.most, v.in_progress)
        return self.windowed and len(v.waiting) < self.most

    def _gather(self):
        """The wait for a fuller batch: the window's timeout, or for a round without one an event
        that `hurry` succeeds. Arrivals meanwhile join the batch; a full one goes at once (hurry)."""
        return self.env.timeout(self.window_s) if self.window_s > 0 else self.env.event()

    def _ahead(self, v: Verifier):
        """max_batch's window and the verification after it as one timeout, where nothing else in the
        run happens before the window ends (env.peek()) and the verifier's server is idle: no
        verification can join the batch, so it is taken now and its job booked from the window's end
        (Server.hold); the timeout lands exactly on the job's end (else None: the window waits)."""
        env, now, most = self.env, self.env.now, self.most
        if self.rounds or v.server.busy or now <= 0:  # a window (max_batch's) that can take its batch now
            return None
        opens = now + self.window_s  # as the window's timeout ends
        if env.peek() <= opens:
            return None
        batch = v.waiting[:most]
        seconds = self._verify_s(v, batch)
        end = opens + seconds if seconds > 0 else opens
        if end > 2 * now:  # a single timeout would not land on it exactly (wait_until's case)
            return None
        v.waiting, v.ahead = v.waiting[most:], batch
        v.server.hold(opens, seconds, "verify")
        return env.timeout(end - now)

    @staticmethod
    def _verify_s(v: Verifier, batch: list[tuple]) -> float:
        """One verification of the batch: its largest query, at its longest context."""
        if len(batch) == 1:
            _, g, context, _ = batch[0]
            query = g + 1
        else:
            query = max(g for _, g, _, _ in batch) + 1
            context = max(c for _, _, c, _ in batch)
        return v.fwd.forward_s(len(batch), query, context) + v.fwd.step_s

    def _verifier(self, v: Verifier):
        env, spec, rounds = self.env, self.spec, self.rounds
        draws, edge_of, deliver = [a.draw for a in self.accepts], self.edge_of, self.deliver
        most, oldest = spec.max_batch, spec.policy in ("fcfs", "max_batch", "goodspeed")
        while True:
            if not v.waiting:
                v.wake = env.event()
                yield v.wake  # a verification came, or (gathered) the wait for a fuller batch ended
            if v.gathered:
                v.gathered = False
            elif self._gathers(v):
                wait = self._ahead(v)
                if wait is None:
                    wait = v.full = self._gather()
                yield wait
            v.full = None
            if v.ahead is not None:  # taken, and verified in the wait that just ended
                batch, v.ahead = v.ahead, None
                v.server.release()
            else:
                if oldest:  # choose's oldest max_batch, without building the indices
                    batch, v.waiting = v.waiting[:most], v.waiting[most:]
                else:
                    taken = choose(v.waiting, spec.policy, most, self.goodput, self._score)
                    batch = [v.waiting[i] for i in taken]
                    gone = set(taken)
                    v.waiting = [w for i, w in enumerate(v.waiting) if i not in gone]
                yield from v.server.serve(self._verify_s(v, batch), "verify")
            for r, g, _, verdict in batch:
                deliver(r, verdict, draws[edge_of[r.id]](g) if g else 0)
            if rounds:
                self._allocate(batch)

    def _allocate(self, batch: list[tuple]) -> None:
        """GoodSpeed's feedback: the next draft length of each request verified in this round, from
        its edge's tokens so far (weight 1 / goodput, the common elapsed time left out)."""
        edges = [self.edge_of[r.id] for r, _, _, _ in batch]
        for e, (_, g, _, _) in zip(edges, batch):
            self.drafted[e] += g
            self.verified[e] += 1
        weights = [1 / self.edge_tokens[e] if self.edge_tokens[e] else math.inf for e in edges]
        for (r, _, _, _), g in zip(batch, allocate(weights, [self.gains[e] for e in edges], self.spec.verify_tokens)):
            self.next_depth[r.id] = g


def edge_acceptance(world, edge: Edge):
    """The acceptance model of an edge's drafts: the scenario's, or iid at the edge's own alpha
    (thinned by a vocabulary bridge as the scenario's is) drawn from a Generator of its own, spawned
    from the routing stream: its draws leave every other stream's, and every other edge's, alone."""
    if edge.alpha is None:
        return world.acceptance
    a = edge.alpha
    model = acc.Acceptance(lambda g: a ** np.arange(g + 1), world.routing.spawn(1)[0])
    bridge = world.scenario.vocabulary
    return acc.thinned(model, bridge.acceptance_factor) if bridge is not None and bridge.acceptance_factor < 1 else model
