"""Speculative decoding across two processes over TCP (simulator/calibration/tcp.py): the same
tokens as the in-process runner, and a shaping proxy that never delivers sooner than its link's
wire time and latency allow (a lower bound only: how much later depends on the host)."""

from __future__ import annotations

import multiprocessing as mp
import socket
import time

import pytest

torch = pytest.importorskip("torch")

from simulator import catalog  # noqa: E402
from simulator.calibration import runner, tcp  # noqa: E402
from simulator.calibration.graphs import Eager  # noqa: E402
from simulator.calibration.llama import Llama  # noqa: E402


def test_a_greedy_generation_over_tcp_makes_the_in_process_tokens():
    torch.set_num_threads(1)
    ctx = mp.get_context("spawn")
    ready = ctx.Queue()
    server = ctx.Process(target=tcp.target_server, args=(ready, "llama-68m", 1, 64, 1), daemon=True)
    server.start()
    port = ready.get(timeout=120)
    prompt = torch.randint(0, 32000, (1, 8), generator=torch.Generator().manual_seed(3))
    draft = Eager(Llama(catalog.PRESETS["llama-68m"], max_batch=1, max_len=64, seed=2))
    toks, accepted, _, marks, parts = tcp.generate(port, draft, prompt[0].tolist(), 12, 3, True, 0.0, 0)
    server.join(timeout=60)
    target = Llama(catalog.PRESETS["llama-68m"], max_batch=1, max_len=64, seed=1)
    draft = Llama(catalog.PRESETS["llama-68m"], max_batch=1, max_len=64, seed=2)
    same, same_accepted, _ = runner.speculative(target, draft, prompt, 12, 3, "greedy")
    assert toks == same and accepted == same_accepted and len(marks) == len(accepted)
    # each step's drafting and wait, and the server's verification inside that wait
    assert [len(parts[k]) for k in ("draft_s", "wait_s", "verify_s")] == [len(accepted)] * 3
    assert all(0 < v <= w for v, w in zip(parts["verify_s"], parts["wait_s"]))


def test_the_proxy_delivers_a_frame_no_sooner_than_its_wire_time_and_latency():
    listener = tcp._listener()
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    shaper = ctx.Process(target=tcp.proxy, args=(q, listener.getsockname()[1], 1.0, 20.0), daemon=True)
    shaper.start()
    client = tcp._nodelay(socket.create_connection(("127.0.0.1", q.get(timeout=30))))
    server, _ = listener.accept()
    payload = bytes(2000)  # (4 + 2000) bytes at 1 Mbit/s: 16.0 ms on the wire, then 20 ms
    t0 = time.perf_counter()
    tcp.send(client, payload)
    assert tcp.receive(server) == payload
    assert time.perf_counter() - t0 >= 8 * 2004 / 1e6 + 0.020
    tcp.send(server, b"ok")
    assert tcp.receive(client) == b"ok"
    client.close()
    server.close()
    shaper.join(timeout=30)


@pytest.mark.slow
def test_a_campaign_writes_each_pair_with_its_link_and_host_probes(tmp_path):
    """tcp.measure: every (configuration, link) pair once per timed round, the linked runs with their
    link, every run with a host probe of the target and the draft before and after it."""
    import json

    config = {"target": "llama-68m", "draft": "llama-68m", "gamma": 2, "mode": "oracle", "alpha": 0.7,
              "prompt_tokens": 8, "output_tokens": 6}
    links = [None, {"bandwidth_mbps": 100, "latency_ms": 1}]
    out = tcp.measure([config], links, tmp_path / "runs.jsonl", "cpu-test", repeats=1, log=lambda *_: None,
                      probes=True)
    runs = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r.get("link", {}).get("latency_ms", 0) for r in runs) == [0, 1]
    for r in runs:
        assert r["output_tokens"] == 6 and len(r["host_probe"]["target_ms"]) == 2
        assert len(r["host_probe"]["draft_ms"]) == 2 and r["host_probe"]["context_tokens"] == 8
