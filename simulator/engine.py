"""The SimPy core: devices, links, arrivals, and a strategy serving each request.

The engine builds the world from a scenario (devices with their latency models, links,
acceptance, the workload's requests), starts one process per user (closed loop) or per
arrival (open loop), and lets the strategy serve each request. It records one flat record
per request and one per step; metrics.py turns them into the report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, NamedTuple

import numpy as np
import simpy

from . import acceptance, workload
from .network import Link
from .profiles import ForwardTime, Profile, open_profile
from .records import BATCH_FIELDS, STEP_FIELDS, BatchRecord, RequestRecord, StepRecord  # noqa: F401 (re-exported)
from .scenario import Role, Scenario
from .server import Server
from .strategies import STRATEGIES

if TYPE_CHECKING:
    from .batching import Batcher


class Endpoint(NamedTuple):
    """A model on a device, as seen from a peer device."""

    server: Server
    forward: ForwardTime
    name: str  # the device
    link: Link | None  # to the peer; None on the peer's own device


@dataclass
class Device:
    name: str
    server: Server
    profile: Profile
    forward: dict[str, ForwardTime] = field(default_factory=dict)  # by model key


@dataclass
class World:
    """What a strategy sees: the clock, the devices and links, acceptance, and the step log."""

    env: simpy.Environment
    scenario: Scenario
    devices: dict[str, Device]
    links: dict[frozenset, Link]
    acceptance: object
    source: str = "scenario"  # the scenario's file, for input errors found while running
    steps: list[StepRecord] = field(default_factory=list)
    batches: list[BatchRecord] = field(default_factory=list)  # from batching servers
    serving: Batcher | None = None  # a batching server's admission state, for the report

    def link(self, a: str, b: str) -> Link | None:
        return self.links.get(frozenset((a, b)))

    def endpoint(self, device: str, model: str, peer: str) -> Endpoint:
        """A model on a device, with the link to `peer` (None if it is the same device)."""
        d = self.devices[device]
        return Endpoint(d.server, d.forward[model], d.name, self.link(device, peer) if device != peer else None)


@dataclass
class Result:
    records: list[RequestRecord]
    steps: list[StepRecord]
    world: World
    simulated_s: float
    in_system_area: float  # integral over time of requests in the system, request-seconds
    wall_s: float
    events: int | None
    warnings: list[str]
    jobs: list[tuple] | None = None  # (server, start_s, end_s, label) when recorded


def streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent generators per concern: changing one part of a scenario leaves the others' draws alone."""
    names = ("workload", "acceptance", "network")
    return dict(zip(names, (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(names)))))


def build_world(scenario: Scenario, source: str, max_context: int, rngs) -> World:
    env = simpy.Environment()
    devices = {}
    for name, spec in scenario.devices.items():
        profile = open_profile(spec.profile, f"devices.{name}.profile", source)
        devices[name] = Device(name, Server(env, name), profile)
    for place in scenario.strategy.placements().values():
        model = scenario.models[place.model]
        preset = model.preset if not model.model_dump(exclude={"preset"}, exclude_none=True) else None
        dev = devices[place.device]
        if place.model not in dev.forward:
            ms_fn = dev.profile.ms_fn(place.model, preset, model.architecture())
            overheads = scenario.devices[place.device].overheads or dev.profile.overheads
            dev.forward[place.model] = ForwardTime(ms_fn, max_context, overheads, draft=place.role is Role.DRAFT)
    media: dict = {}  # shared media by name, filled by the links that name one
    links = {frozenset((s.a, s.b)): Link(env, s, rngs["network"], media) for s in scenario.links}
    return World(env, scenario, devices, links, acceptance.build(scenario.acceptance, rngs["acceptance"]), source)


def memory_warnings(scenario: Scenario, world: World, max_context: int) -> list[str]:
    out = []
    if scenario.strategy.kind == "batched":
        return out  # it admits requests by memory itself
    users = getattr(scenario.workload.arrival, "users", 1)
    for name, dev in world.devices.items():
        spec_gb = scenario.devices[name].memory_gb
        capacity = (spec_gb or dev.profile.memory_gb) * 1e9
        archs = [scenario.models[m].architecture() for m in dev.forward]
        weights = sum(a.weight_bytes() for a in archs)
        kv = sum(a.kv_bytes_per_token() for a in archs) * max_context * users
        if weights + kv > capacity:
            out.append(f"device {name}: weights ({weights / 1e9:.1f} GB) and KV cache for {users} "
                       f"sequence(s) of {max_context} tokens ({kv / 1e9:.1f} GB) exceed its memory "
                       f"({capacity / 1e9:.1f} GB)")
    return out


def simulate(scenario: Scenario, source: str = "scenario",
             progress: Callable[[int, int | None], None] | None = None, record_jobs: bool = False) -> Result:
    """Run a scenario. With record_jobs, every job on every device and link direction is logged
    as (server, start_s, end_s, label) in Result.jobs, for timelines."""
    wall0 = time.perf_counter()
    rngs = streams(scenario.seed)
    reqs = workload.draw(scenario.workload, rngs["workload"])
    lookahead = scenario.strategy.lookahead_tokens()  # gamma for a chain; tree nodes for a tree
    max_context = max(reqs.prompts) + max(reqs.outputs) + lookahead + 1
    world = build_world(scenario, source, max_context, rngs)
    strategy = STRATEGIES[scenario.strategy.kind](scenario.strategy, world)
    jobs: list[tuple] | None = [] if record_jobs else None
    if record_jobs:
        for server in [d.server for d in world.devices.values()] + [w for ln in world.links.values() for w in ln.wire.values()]:
            server.log = jobs
    env = world.env
    records: list[RequestRecord] = []
    state = {"in_system": 0, "area": 0.0, "since": 0.0, "done": 0}
    total = reqs.requests if reqs.duration_s is None else None

    def count(delta: int) -> None:
        state["area"] += state["in_system"] * (env.now - state["since"])
        state["in_system"] += delta
        state["since"] = env.now

    def serve(record: RequestRecord):
        count(+1)
        yield from strategy.serve(record)
        count(-1)
        state["done"] += 1
        if progress is not None:
            progress(state["done"], total)

    def new_record(i: int, user: int) -> RequestRecord:
        rec = RequestRecord(i, reqs.prompts[i], reqs.outputs[i], env.now, user=user)
        records.append(rec)
        return rec

    if reqs.arrivals_s is not None:
        def arrivals():
            for i, t in enumerate(reqs.arrivals_s):
                if t > env.now:
                    yield env.timeout(t - env.now)
                env.process(serve(new_record(i, i)))
        env.process(arrivals())
    else:
        issued = iter(range(reqs.requests))

        def user(u: int):
            for i in issued:
                if reqs.duration_s is not None and env.now > reqs.duration_s:
                    return
                yield from serve(new_record(i, u))
                if reqs.think_s > 0:
                    yield env.timeout(reqs.think_s)
        for u in range(reqs.users):
            env.process(user(u))

    env.run()
    warnings = memory_warnings(scenario, world, max_context)
    for name, dev in world.devices.items():
        if dev.profile.provenance == "derived":
            warnings.append(f"device {name}: profile {dev.profile.name} is derived from datasheet numbers "
                            "(roofline), not measured")
        warnings.extend(dev.profile.warnings.values())
    finished = max((r.finish_s for r in records), default=0.0)  # the clock may run on through a think time
    return Result(records, world.steps, world, finished, state["area"], time.perf_counter() - wall0,
                  _events(env), sorted(set(warnings), key=warnings.index), jobs)


def _events(env: simpy.Environment) -> int | None:
    """Events SimPy scheduled, read from its event-id counter (None if that changes)."""
    counter = getattr(env, "_eid", None)
    return next(counter) if counter is not None else None
