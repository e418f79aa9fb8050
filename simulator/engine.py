"""The SimPy core: devices, links, arrivals, and a strategy serving each request.

The engine builds the world from a scenario (devices with their latency models, links,
acceptance, the workload's requests), starts one process per user (closed loop) or per
arrival (open loop), and lets the strategy serve each request. It records one flat record
per request and one per step, or, when no records are asked for (keep_records=False), only the
streamed figures the report needs (tallies.py); metrics.py turns either into the report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Callable, NamedTuple

import numpy as np
import simpy

from . import acceptance, tallies, workload
from .errors import InputError
from .network import Link, uniform_draws
from .profiles import ForwardTime, Profile, open_profile
from .tensor_parallel import group_ms_fn
from .records import BATCH_FIELDS, STEP_FIELDS, BatchRecord, RequestRecord, StepRecord  # noqa: F401 (re-exported)
from .scenario import Scenario
from .strategies import Role
from .server import Server

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
    gpus: int = 1  # GPUs in lock step (a tensor-parallel group): one server
    memory_bytes: float = 0.0  # for weights and KV caches, over all its GPUs


@dataclass
class World:
    """What a strategy sees: the clock, the devices and links, acceptance, and the step log."""

    env: simpy.Environment
    scenario: Scenario
    devices: dict[str, Device]
    links: dict[frozenset, Link]
    acceptance: object
    source: str = "scenario"  # the scenario's file, for input errors found while running
    steps: list[tuple] = field(default_factory=list)  # rows in StepRecord's field order (Result.steps);
    # without records kept, a tallies.Discard
    batches: list[tuple] = field(default_factory=list)  # rows in BatchRecord's field order, from batching
    # servers; without records kept, a tallies.BatchTotals
    routing: np.random.Generator | None = None  # for strategies that route requests at random
    requests: workload.Requests | None = None  # the run's drawn requests (set by prepare, before the strategy)

    @property
    def keeps_records(self) -> bool:
        return isinstance(self.steps, list)

    def servers(self) -> list:
        """Every FCFS server: each device's, and each link direction's wire."""
        return [d.server for d in self.devices.values()] + [w for ln in self.links.values() for w in ln.wire.values()]

    def link(self, a: str, b: str) -> Link | None:
        return self.links.get(frozenset((a, b)))

    def endpoint(self, device: str, model: str, peer: str) -> Endpoint:
        """A model on a device, with the link to `peer` (None if it is the same device)."""
        d = self.devices[device]
        return Endpoint(d.server, d.forward[model], d.name, self.link(device, peer) if device != peer else None)


@dataclass
class Result:
    records: list[RequestRecord] | None  # None when no records were kept (then see `columns`)
    world: World
    simulated_s: float
    in_system_area: float  # integral over time of requests in the system, request-seconds
    wall_s: float
    events: int | None
    warnings: list[str]
    jobs: list[tuple] | None = None  # (server, start_s, end_s, label) when recorded
    requests: workload.Requests | None = None  # the requests drawn for the run
    serving: Batcher | None = None  # a batching server's admission state (preemptions, KV peak), for the report
    kept: tallies.RequestColumns | None = None  # the per-request columns, when no records were kept
    stopped: bool = False  # ended early by simulate's `stop` (some requests unfinished)
    blocks: dict | None = None  # the strategy's own report blocks (its process's report(), if it has one)

    @cached_property
    def columns(self) -> tallies.RequestColumns:
        """Per request, in id order, what the report needs (from the records, when kept)."""
        return self.kept if self.records is None else tallies.RequestColumns.of(self.records)

    @cached_property
    def steps(self) -> list[StepRecord]:
        """The decoding steps, as StepRecords (the processes append plain rows: cheaper in the step loop)."""
        return list(map(StepRecord._make, self._rows("steps")))

    @cached_property
    def batches(self) -> list[BatchRecord]:
        """A batching server's steps, as BatchRecords."""
        return list(map(BatchRecord._make, self._rows("batches")))

    def _rows(self, name: str) -> list[tuple]:
        if not self.world.keeps_records:
            raise ValueError(f"no {name} were kept: simulate with keep_records=True")
        return getattr(self.world, name)


def streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent generators per concern: changing one part of a scenario leaves the others' draws alone."""
    names = ("workload", "acceptance", "network", "routing")  # a child's draws depend on its index alone
    return dict(zip(names, (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(names)))))


def _retokenized(ms_fn, per_token_ms: float):
    """A draft's forward times plus the vocabulary bridge's host time: one drafted token per sequence."""
    return lambda batch, query, contexts: ms_fn(batch, query, contexts) + per_token_ms * batch


def build_world(scenario: Scenario, source: str, max_context: int, rngs, keep_records: bool = True) -> World:
    env = simpy.Environment()
    devices = {}
    for name, spec in scenario.devices.items():
        profile = open_profile(spec.profile, f"devices.{name}.profile", source)
        memory = (spec.memory_gb or profile.memory_gb) * 1e9 * spec.gpus
        devices[name] = Device(name, Server(env, name), profile, gpus=spec.gpus, memory_bytes=memory)
    for place in scenario.strategy.placements().values():
        model = scenario.models[place.model]
        # a preset keeps its measured grid unless its shape changed (weight_bits is no shape: profiles.py warns)
        shaped = model.model_dump(exclude={"preset", "weight_bits", "tokenizer"}, exclude_none=True)
        preset = model.preset if not shaped else None
        dev = devices[place.device]
        if place.model not in dev.forward:
            arch, tp = model.architecture(), scenario.tp(place)
            ms_fn = dev.profile.ms_fn(place.model, preset, arch, tp)  # one GPU's share of it
            if tp > 1:  # and the all-reduces between the GPUs (tensor_parallel.py)
                ms_fn = group_ms_fn(ms_fn, arch, tp, scenario.devices[place.device].interconnect)
            bridge = scenario.vocabulary
            if place.role is Role.DRAFT and bridge is not None and bridge.retokenize_ms_per_token:
                ms_fn = _retokenized(ms_fn, bridge.retokenize_ms_per_token)
            overheads = scenario.devices[place.device].overheads or dev.profile.overheads
            dev.forward[place.model] = ForwardTime(ms_fn, max_context, overheads, draft=place.role is Role.DRAFT)
    media: dict = {}  # shared media by name, filled by the links that name one
    uniform = uniform_draws(rngs["network"], scenario.links)
    links = {frozenset((s.a, s.b)): Link(env, s, rngs["network"], media, uniform) for s in scenario.links}
    for s in scenario.links:  # each end's host time per message, from its profile's overheads
        ends = [scenario.devices[d].overheads or devices[d].profile.overheads for d in (s.a, s.b)]
        links[frozenset((s.a, s.b))].host_s = sum(o.message_ms for o in ends) / 1000
    accept = acceptance.build(scenario.acceptance, rngs["acceptance"])
    if scenario.vocabulary is not None and scenario.vocabulary.acceptance_factor < 1:
        accept = acceptance.thinned(accept, scenario.vocabulary.acceptance_factor)
    world = World(env, scenario, devices, links, accept, source, routing=rngs["routing"])
    if not keep_records:
        world.steps, world.batches = tallies.Discard(), tallies.BatchTotals()
    return world


@dataclass
class Setup:
    """A scenario made ready to run: its requests drawn, its world built (every profile and trace
    opened) and its strategy's process built. Building it is the validation of a scenario."""

    scenario: Scenario
    requests: workload.Requests
    max_context: int  # tokens: the longest prompt + output + the strategy's lookahead + 1
    world: World
    strategy: object  # the strategy's process: serve(record) is a SimPy process body


def prepare(scenario: Scenario, source: str = "scenario", keep_records: bool = True) -> Setup:
    """Draw the requests, open every profile and trace, build the world and the strategy's process;
    bad input raises InputError here, before anything runs. Without keep_records the run keeps only
    what the report needs (tallies.py)."""
    rngs = streams(scenario.seed)
    reqs = workload.draw(scenario.workload, rngs["workload"])
    if not reqs.requests:  # only a duration window can leave no request
        raise InputError(source, "workload.duration_s", f"no request arrives within duration_s "
                         f"({scenario.workload.duration_s:g} s): lengthen it, or give requests instead")
    lookahead = scenario.strategy.lookahead_tokens()  # gamma for a chain; tree nodes for a tree
    max_context = workload.longest(reqs.prompts) + workload.longest(reqs.outputs) + lookahead + 1
    world = build_world(scenario, source, max_context, rngs, keep_records)
    world.requests = reqs
    return Setup(scenario, reqs, max_context, world, scenario.strategy.build(world))


def memory_warnings(scenario: Scenario, world: World, max_context: int) -> list[str]:
    out = []
    if scenario.strategy.admits_by_memory:
        return out  # it admits requests by memory itself
    users = getattr(scenario.workload.arrival, "users", 1)
    for name, dev in world.devices.items():
        capacity = dev.memory_bytes
        archs = [scenario.models[m].architecture() for m in dev.forward]
        weights = sum(a.weight_bytes() for a in archs)
        kv = sum(a.kv_bytes_per_token() for a in archs) * max_context * users
        if weights + kv > capacity:
            out.append(f"device {name}: weights ({weights / 1e9:.1f} GB) and KV cache for {users} "
                       f"sequence(s) of {max_context} tokens ({kv / 1e9:.1f} GB) exceed its memory "
                       f"({capacity / 1e9:.1f} GB)")
    return out


def run_warnings(setup: Setup) -> list[str]:
    """Memory, derived profiles and every lookup a profile had to extrapolate, each once."""
    warnings = memory_warnings(setup.scenario, setup.world, setup.max_context)
    for name, dev in setup.world.devices.items():
        if dev.profile.provenance == "derived":
            warnings.append(f"device {name}: profile {dev.profile.name} is derived from datasheet numbers "
                            "(roofline), not measured")
        warnings.extend(dev.profile.warnings.values())
    return sorted(set(warnings), key=warnings.index)


class _Census:
    """Requests in the system over time (for Little's law) and requests finished (for progress); as
    each finishes (of a known number, the last), every server and link notes its busy time, so the last to finish gives the run's
    (work still under way then, such as a draft no one will verify, is not part of the run)."""

    def __init__(self, world: World, total: int | None, progress):
        self.env, self.total, self.progress = world.env, total, progress
        self.in_system, self.area, self.since, self.done = 0, 0.0, 0.0, 0
        self.marked = world.servers() + list(world.links.values())

    def count(self, delta: int) -> None:
        self.area += self.in_system * (self.env.now - self.since)
        self.in_system += delta
        self.since = self.env.now

    def finished(self) -> None:
        self.done += 1
        if self.total is None or self.done == self.total:  # of a known number, only the last one's matters
            for m in self.marked:
                m.mark()
        if self.progress is not None:
            self.progress(self.done, self.total)


def simulate(scenario: Scenario, source: str = "scenario",
             progress: Callable[[int, int | None], None] | None = None, record_jobs: bool = False,
             setup: Setup | None = None, keep_records: bool = True,
             stop: Callable[[RequestRecord], bool] | None = None, exact_columns: bool = False) -> Result:
    """Run a scenario (on `setup`, if it is already prepared; a setup runs once, keeping records as
    it was prepared to). With record_jobs, every job on every device and link direction is logged
    as (server, start_s, end_s, label) in Result.jobs, for timelines. Without keep_records, no
    request, step or batch records are kept, only what the report needs (Result.columns; memory
    grows by 28 bytes a request instead of about a kilobyte, and not at all past
    tallies.EXACT_LIMIT requests, unless `exact_columns` keeps every value). With `stop`, asked after each request
    finishes (an open loop of a known number of requests only), the run ends at the first True:
    Result.stopped, its figures partial."""
    wall0 = time.perf_counter()
    setup = setup or prepare(scenario, source, keep_records)
    world, reqs, strategy = setup.world, setup.requests, setup.strategy
    jobs: list[tuple] | None = [] if record_jobs else None
    if record_jobs:
        for server in world.servers():
            server.log = jobs
    env = world.env
    records: list[RequestRecord] | None = [] if world.keeps_records else None
    kept = None if world.keeps_records else tallies.RequestColumns(
        None if exact_columns else tallies.EXACT_LIMIT, world.scenario.slo)
    census = _Census(world, reqs.requests if reqs.duration_s is None else None, progress)
    if stop is not None and (reqs.arrivals_s is None or reqs.duration_s is not None):
        raise ValueError("stop needs an open loop of a known number of requests")
    until = env.event() if stop is not None else None  # triggered by `stop`, or by the last request

    def serve(record: RequestRecord):
        census.count(+1)
        yield from strategy.serve(record)
        census.count(-1)
        census.finished()
        if kept is not None:
            kept.close(record)
        if until is not None and not until.triggered and (stop(record) or census.done == reqs.requests):
            until.succeed(census.done < reqs.requests)

    def new_record(i: int, user: int) -> RequestRecord:
        rec = RequestRecord(i, reqs.prompts[i], reqs.outputs[i], env.now, user=user)
        if kept is None:
            records.append(rec)
        else:
            kept.open(rec)
        return rec

    _start_arrivals(env, reqs, serve, new_record)
    if until is None:
        env.run()
        stopped = False
    else:  # the until event's value: whether `stop` ended the run before its last request
        stopped = bool(env.run(until=until))
    # the clock may run on through a think time: the run ends when its last request does
    finished = max((r.finish_s for r in records), default=0.0) if kept is None else kept.last_finish_s()
    return Result(records, world, finished, census.area, time.perf_counter() - wall0, _events(env),
                  run_warnings(setup), jobs, reqs, getattr(strategy, "batcher", None), kept, stopped,
                  strategy.report() if hasattr(strategy, "report") else None)


def _start_arrivals(env, reqs, serve, new_record) -> None:
    """One process per arrival (open loop) or per user (closed loop), each serving its requests."""
    if reqs.arrivals_s is not None:
        def arrivals():
            for i, t in enumerate(reqs.arrivals_s):
                if t > env.now:
                    yield env.timeout(t - env.now)
                env.process(serve(new_record(i, i)))
        env.process(arrivals())
        return
    issued = iter(range(reqs.requests))

    def user(u: int):
        for i in issued:
            if reqs.duration_s is not None and env.now > reqs.duration_s:
                return
            yield from serve(new_record(i, u))
            if reqs.think_s > 0:
                yield env.timeout(reqs.think_s)
    for u in range(min(reqs.users, reqs.requests)):  # a user beyond the requests would never send one
        env.process(user(u))


def _events(env: simpy.Environment) -> int | None:
    """Events SimPy scheduled, read from its event-id counter (None if that changes)."""
    counter = getattr(env, "_eid", None)
    return next(counter) if counter is not None else None
