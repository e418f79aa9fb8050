"""Small scenario builders for tests: constant-latency worlds whose answers are known by hand."""

from __future__ import annotations

import copy
import socket

from simulator import engine, metrics
from simulator import scenario as sc


def constant_scenario(draft_ms=1.0, target_ms=10.0, gamma=4, alpha=0.8, output=256, prompt=16,
                      requests=1, users=1, split=False, link=None, **extra) -> dict:
    """Draft and target on one device, or on two (edge, cloud) joined by `link`."""
    profile = {"kind": "constant", "forward_ms": {"draft": draft_ms, "target": target_ms}}
    data = {
        "name": "test",
        "seed": 1,
        "models": {"draft": {"preset": "llama-68m"}, "target": {"preset": "llama2-7b"}},
        "devices": {"gpu": {"profile": profile}},
        "strategy": {"kind": "speculative", "draft": {"model": "draft", "device": "gpu"},
                     "target": {"model": "target", "device": "gpu"}, "gamma": gamma},
        "acceptance": {"kind": "iid", "alpha": alpha},
        "workload": {"arrival": {"kind": "closed_loop", "users": users}, "requests": requests,
                     "prompt_tokens": prompt, "output_tokens": output},
    }
    if split:
        data["devices"] = {"edge": {"profile": copy.deepcopy(profile)}, "cloud": {"profile": copy.deepcopy(profile)}}
        data["strategy"]["draft"]["device"] = "edge"
        data["strategy"]["target"]["device"] = "cloud"
        data["links"] = [{"a": "edge", "b": "cloud", **(link or {"bandwidth_mbps": float("inf")})}]
    for key, value in extra.items():
        data[key] = value
    return data


def autoregressive(data: dict) -> dict:
    data = copy.deepcopy(data)
    data["strategy"] = {"kind": "autoregressive", "target": data["strategy"]["target"]}
    return data


def run(data: dict):
    """(report, result) of simulating a scenario given as a dict."""
    scenario = sc.parse(data, "test")
    result = engine.simulate(scenario)
    return metrics.report(result, scenario.name, scenario.strategy.kind), result


def stderr_of(result) -> str:
    """A CliRunner result's stderr (its mixed output where the runner does not keep it apart)."""
    try:
        return result.stderr
    except ValueError:
        return result.output


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on now (for a torch.distributed group's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
