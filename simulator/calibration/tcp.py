"""Speculative decoding across two processes joined by TCP through a link-shaping proxy: the link
model checked against real sockets.

Three processes on this machine: the target (a server that prefills, verifies and decides
acceptance), the draft (the client, where the user is, which times the run) and, between them,
a proxy that shapes each direction as the simulator's link does. Every message is a frame (a
4-byte length, then the payload); the proxy reads whole frames and delivers each one at

    start = max(arrival, the direction's wire free), wire free = start + 8 (4 + payload) / bandwidth,
    delivered = wire free + latency

(one transmitter per direction, first come first served, then the propagation delay: the
simulator's `links` rule with `header_bytes` 4). What crosses is what the simulator sizes: the
prompt's token ids up (4 bytes each) and the first token down (8 bytes: an accepted count and a
token id); per step the drafted ids up and the verdict down (8 bytes). The loopback, the
kernel and the proxy's own hops add their costs on top, which is what `calibrate compare`
measures and `calibrate fit` can fit (a per-step overhead).

Acceptance is decided by the target: `greedy` (the models share a bigram map, llama.py) or
`oracle` (Bernoulli(alpha) per draft from a seeded Generator on the target's side).

On a CPU both models run eagerly; on a GPU (`device="cuda"`) each process replays its model's
forwards from CUDA graphs, every shape a run can meet captured before the first timed run, as a
serving engine starts. `cores` pins the three processes to CPUs of their own.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np

FRAME = struct.Struct("<I")  # the length before each payload: the link's header_bytes
HEADER_BYTES = FRAME.size
ID = struct.Struct("<i")
VERDICT = struct.Struct("<ii")  # accepted count, the target's next token: payloads.RESULT_BYTES
END = b"E"  # the end of a generation: no whole number of ids


def send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(FRAME.pack(len(payload)) + payload)


def _exactly(sock: socket.socket, n: int) -> bytes | None:
    parts, left = [], n
    while left:
        chunk = sock.recv(left)
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def receive(sock: socket.socket) -> bytes | None:
    """One frame's payload; None when the peer closed."""
    head = _exactly(sock, FRAME.size)
    if head is None:
        return None
    (size,) = FRAME.unpack(head)
    return _exactly(sock, size) if size else b""


def ids(values) -> bytes:
    return b"".join(ID.pack(int(v)) for v in values)


def unids(data: bytes) -> list[int]:
    return [v for (v,) in ID.iter_unpack(data)]


def _listener() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s


def _nodelay(s: socket.socket) -> socket.socket:
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a frame goes out when written
    return s


# ---------------------------------------------------------------- the proxy


def _shape(src: socket.socket, dst: socket.socket, bits_per_s: float, latency_s: float) -> None:
    """Forward frames src -> dst as one direction of a link. The protocol has at most one frame in
    flight per direction, so waiting here for each delivery is the link's own timing."""
    free = 0.0
    while True:
        payload = receive(src)
        if payload is None:
            dst.shutdown(socket.SHUT_WR)
            return
        arrived = time.perf_counter()
        start = max(arrived, free)
        free = start + 8 * (HEADER_BYTES + len(payload)) / bits_per_s
        due = free + latency_s
        while (left := due - time.perf_counter()) > 0:
            time.sleep(left if left > 2e-3 else 0)  # sleep, then yield the CPU until due
        send(dst, payload)


def _pin(core: int | None) -> None:
    if core is not None:
        os.sched_setaffinity(0, {core})


def proxy(ready, target_port: int, mbps: float, latency_ms: float, core: int | None = None) -> None:
    """Accept one client, connect it to the target, shape both directions (a process of its own)."""
    _pin(core)
    listener = _listener()
    ready.put(listener.getsockname()[1])
    client, _ = listener.accept()
    server = socket.create_connection(("127.0.0.1", target_port))
    _nodelay(client), _nodelay(server)
    up = threading.Thread(target=_shape, args=(client, server, mbps * 1e6, latency_ms / 1000), daemon=True)
    up.start()
    _shape(server, client, mbps * 1e6, latency_ms / 1000)
    up.join()


# ---------------------------------------------------------------- the target (server)


def executor(preset: str, max_len: int, device: str, seed: int, prompts: list[int], queries: int):
    """The model's executor on `device` (graphs on a GPU, every shape of a prompt of `prompts` and a
    step of up to `queries` tokens at any position captured now; eager on a CPU)."""
    from .. import catalog
    from . import graphs
    from .llama import Llama
    from .measure import default_mode, setup

    dev, dtype = setup(device, None)
    ex = graphs.executor(Llama(catalog.PRESETS[preset], max_batch=1, max_len=max_len, device=dev, dtype=dtype,
                               seed=seed), default_mode(dev))
    if isinstance(ex, graphs.Graphs) and ex.cuda:
        for p in prompts:
            ex.prepare(1, p, p)
        for q in range(1, queries + 1):
            for end in range(q, max_len + 1, graphs.BUCKET):
                ex.prepare(1, q, end)
            ex.prepare(1, q, max_len)
    return ex


def target_server(ready, preset: str, threads: int, max_len: int, runs: int, device: str = "cpu",
                  prompts: tuple = (), queries: int = 0, core: int | None = None) -> None:
    """Serve `runs` connections, one generation each: a first frame (mode, alpha, seed, output
    tokens, then the prompt's ids), the first token down, then per step the drafted ids up and the
    verdict down; a frame that is no whole number of ids (END) ends the generation, and the server
    answers it, after the run's clock has stopped, with the seconds of each verification (from its
    drafts read to its verdict ready to send: float64s). On a GPU the graphs of prompts of `prompts`
    tokens and of steps of up to `queries` are captured first."""
    import torch

    _pin(core)
    torch.set_num_threads(threads)
    model = executor(preset, max_len, device, 1, list(prompts), queries)
    dev = model.model.device
    listener = _listener()
    ready.put(listener.getsockname()[1])
    for _ in range(runs):
        conn, _ = listener.accept()
        _nodelay(conn)
        first = receive(conn)
        greedy, alpha, seed, n = struct.unpack("<?dqi", first[:21])
        prompt = unids(first[21:])
        rng = np.random.default_rng(seed)
        nxt = int(model(torch.tensor([prompt], device=dev), 0)[0, -1])
        send(conn, VERDICT.pack(0, nxt))
        pos, out, spent = len(prompt), 1, []
        while (msg := receive(conn)) is not None and len(msg) % ID.size == 0:
            begun = time.perf_counter()
            drafts = unids(msg)
            choice = model(torch.tensor([[nxt] + drafts], device=dev), pos)[0].tolist()
            k = 0
            while k < len(drafts) and (drafts[k] == choice[k] if greedy else rng.random() < alpha):
                k += 1
            new = (drafts[:k] + [choice[k]])[: n - out]
            spent.append(time.perf_counter() - begun)  # before the send: inside the client's wait
            send(conn, VERDICT.pack(k, choice[k]))
            pos, out, nxt = pos + len(new), out + len(new), new[-1]
        if msg is not None:
            send(conn, struct.pack(f"<{len(spent)}d", *spent))
        conn.close()
    listener.close()


# ---------------------------------------------------------------- the draft (client)


def generate(port: int, draft, prompt: list[int], n: int, gamma: int, greedy: bool, alpha: float,
             seed: int) -> tuple[list[int], list[int], float, list[float], dict]:
    """The user's side: (tokens, accepted per step, seconds, each step's end since the start, and
    per step the seconds of its drafting, of its wait from drafts sent to verdict read, and of its
    verification on the server). The drafts of a step stay on the draft's device until they are
    sent (one read-back a step)."""
    import torch

    dev = draft.model.device
    sock = _nodelay(socket.create_connection(("127.0.0.1", port)))
    t0 = time.perf_counter()
    if gamma:
        draft(torch.tensor([prompt], device=dev), 0)
    send(sock, struct.pack("<?dqi", greedy, alpha, seed, n) + ids(prompt))
    _, nxt = VERDICT.unpack(receive(sock))
    seq, out, accepted, marks = list(prompt) + [nxt], [nxt], [], []
    drafting, waiting = [], []
    pos = dlen = len(prompt)  # tokens in the target's cache; in the draft's
    while len(out) < n:
        g = max(0, min(gamma, n - len(out) - 1))
        begun = time.perf_counter()
        feed, start, drafts = torch.tensor([seq[dlen:pos + 1]], device=dev), dlen, []
        for _ in range(g):  # the first forward catches up on what the draft has not seen
            d = draft(feed, start)[:, -1:]
            drafts.append(d)
            start += feed.shape[1]
            feed = d
        dlen = start
        drafts = torch.cat(drafts, dim=1)[0].tolist() if drafts else []
        sent = time.perf_counter()
        send(sock, ids(drafts))  # none, in a step that only asks for the target's token
        k, token = VERDICT.unpack(receive(sock))
        drafting.append(sent - begun)
        waiting.append(time.perf_counter() - sent)
        new = (drafts[:k] + [token])[: n - len(out)]
        out, seq = out + new, seq + new
        accepted.append(k)
        pos += len(new)
        dlen = min(dlen, pos)
        marks.append(time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    send(sock, END)
    spent = receive(sock)
    sock.close()
    verifying = list(struct.unpack(f"<{len(spent) // 8}d", spent)) if spent else []
    return out, accepted, seconds, marks, {"draft_s": drafting, "wait_s": waiting, "verify_s": verifying}


# ---------------------------------------------------------------- a campaign


def measure(configs: list[dict], links: list[dict], out: Path, profile: str, threads: int = 1, repeats: int = 3,
            seed: int = 0, log=print, probes: bool = False, device: str = "cpu",
            cores: tuple[int, int, int] | None = None) -> Path:
    """Every (configuration, link) pair `repeats` times, round-robin (round -1 untimed, as
    measure.round_robin does), one JSON line each in the measurement format with the run's `link`
    (header_bytes 4, the frame's length) and both devices on `profile`; a link of None runs the
    pair in this one process (runner.speculative), the arm that shows what the sockets add. A configuration: target,
    draft, gamma, mode (greedy | oracle), alpha, prompt_tokens, output_tokens; all share one target.
    `probes`: host probes around every run (measure.host_probe), timed in this process on its own copy of
    the target and the draft (the server's processes share this machine's cores; eager only).
    `device`: where both models run (cuda: from CUDA graphs); `cores`: the CPUs of this process,
    the target's and the proxy's."""
    import torch

    from . import graphs, runner
    from .measure import device_name, host_probe, round_robin

    if probes and device != "cpu":
        raise ValueError("host probes time eager forwards on the CPU")
    client_core, server_core, proxy_core = cores or (None, None, None)
    _pin(client_core)
    torch.set_num_threads(threads)
    targets = {c["target"] for c in configs}
    if len(targets) != 1:
        raise ValueError("one target model per campaign (the server holds one)")
    max_len = max(c["prompt_tokens"] + c["output_tokens"] + c["gamma"] for c in configs) + 2
    if device != "cpu":  # graphs attend over whole buckets: the cache holds the last one
        max_len = graphs.span(max_len, 1 << 30)
    pairs = [(c, ln) for c in configs for ln in links]
    lengths = tuple(sorted({c["prompt_tokens"] for c in configs}))
    queries = max(c["gamma"] for c in configs) + 1
    spawn, fork = mp.get_context("spawn"), mp.get_context("fork")
    ready = spawn.Queue()
    connections = sum(link is not None for _, link in pairs) * (repeats + 1)
    server = spawn.Process(target=target_server, args=(ready, next(iter(targets)), threads, max_len, connections,
                                                       device, lengths, queries, server_core), daemon=True)
    server.start()
    target_port = ready.get(timeout=600)  # a GPU server captures its graphs first
    drafts = {name: executor(name, max_len, device, 2, list(lengths), 2) for name in {c["draft"] for c in configs}}
    prompts = [torch.randint(0, 32000, (c["prompt_tokens"],), generator=torch.Generator().manual_seed(seed + i)).tolist()
               for i, (c, _) in enumerate(pairs)]

    local: dict = {}  # the target in this process, for the arm without a link

    def one(i: int, rnd: int) -> dict:
        cfg, link = pairs[i]
        if "target" not in local and (link is None or probes):
            local["target"] = executor(cfg["target"], max_len, device, 1, list(lengths), queries)
        if probes:
            now, record = host_probe(local["target"].model, drafts[cfg["draft"]].model, cfg["prompt_tokens"])
            before = now()
        started = time.time()
        greedy, alpha = cfg["mode"] == "greedy", cfg.get("alpha") or 0.0
        if link is None:  # in one process, no sockets: what the link adds shows against this arm
            toks, accepted, secs = runner.speculative(local["target"], drafts[cfg["draft"]],
                                                      torch.tensor([prompts[i]]),
                                                      cfg["output_tokens"], cfg["gamma"], cfg["mode"], alpha,
                                                      np.random.default_rng(seed * 1000 + i))
            marks = []
        else:
            q = fork.Queue()
            shaper = fork.Process(target=proxy, args=(q, target_port, link["bandwidth_mbps"], link["latency_ms"],
                                                      proxy_core), daemon=True)
            shaper.start()
            toks, accepted, secs, marks, parts = generate(q.get(timeout=30), drafts[cfg["draft"]], prompts[i],
                                                          cfg["output_tokens"], cfg["gamma"], greedy, alpha,
                                                          seed * 1000 + i)
            shaper.join(timeout=30)
        run = runner.Run(target=cfg["target"], draft=cfg["draft"], gamma=cfg["gamma"], mode=cfg["mode"],
                         alpha=cfg.get("alpha"), prompt_tokens=cfg["prompt_tokens"], output_tokens=len(toks),
                         seconds=secs, tokens_per_s=len(toks) / secs, accepted=accepted,
                         device=device_name(torch.device(device)), repeat=max(rnd, 0))
        rec = run.to_dict() | {
               "target_profile": profile, "draft_profile": profile, "round": rnd,
               "transport": "one process" if link is None else "tcp loopback through a shaping proxy, three processes",
               "started_unix_s": round(started, 3), "step_end_s": [round(m, 6) for m in marks]}
        if link is not None:
            rec |= {f"step_{key}": [round(x, 6) for x in xs] for key, xs in parts.items()}
            rec["link"] = {"bandwidth_mbps": link["bandwidth_mbps"], "latency_ms": link["latency_ms"],
                           "header_bytes": HEADER_BYTES}
        if probes:
            rec["host_probe"] = record(before, now())
        if rnd >= 0:
            where = "in one process" if link is None else f"{link['bandwidth_mbps']:g} Mbit/s {link['latency_ms']:g} ms"
            log(f"{cfg['draft']} gamma {cfg['gamma']} {where}: {rec['tokens_per_s']:.1f} tokens/s")
        return rec

    round_robin(len(pairs), repeats, seed, out, log, one)
    server.join(timeout=60)
    return out
