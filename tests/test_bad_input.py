"""Bad input ends with exit code 2 and one line `error: FILE: FIELD: RULE` on stderr.

The contract (DESIGN.md, "User-facing contracts"): a malformed file, an unknown key, a value out
of range, an unknown profile or model, a dangling reference, a bad trace or profile folder or a
bad `--set` ends with exit code 2 and one message naming the file, the field path as the user
wrote it and the rule; never a traceback, and with `--out DIR` no output file at all.

Each case below mutates a deep copy of a small valid scenario (or writes raw file content),
runs the CLI through typer's CliRunner and checks all of that. The valid scenarios at the end
must exit 0 and write their outputs, so the table cannot pass vacuously.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field as dc_field
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from simulator.cli import app

CONSTANT = {"kind": "constant", "forward_ms": {"draft": 1.0, "target": 10.0}}

BASE: dict = {
    "name": "bad-input-base",
    "seed": 1,
    "models": {"draft": {"preset": "llama-160m"}, "target": {"preset": "llama2-7b"}},
    "devices": {"gpu": {"profile": CONSTANT}},
    "strategy": {
        "kind": "speculative",
        "draft": {"model": "draft", "device": "gpu"},
        "target": {"model": "target", "device": "gpu"},
        "gamma": 4,
    },
    "acceptance": {"kind": "iid", "alpha": 0.8},
    "workload": {"requests": 3, "prompt_tokens": 16, "output_tokens": 16},
}

# The draft on its own device, joined to the target's by a link (dotted assignments, in order).
TWO_DEVICES = {
    "devices.edge": {"profile": CONSTANT},
    "strategy.draft.device": "edge",
    "links": [{"a": "edge", "b": "gpu", "bandwidth_mbps": 100, "latency_ms": 5}],
}

# A measured profile folder, hardware_profiles/ style: profile.yaml and one CSV per preset.
PROFILE_YAML = ("device: Test GPU\nprovenance: measured\nmethod: a test grid\ndtype: bf16\n"
                "memory_gb: 80\n")
CSV_HEADER = "batch,query_tokens,context_tokens,latency_ms_p50,latency_ms_p10,latency_ms_p90,samples\n"


def grid_csv(ms: float, drop: tuple | None = None) -> str:
    rows = [(1, q, c) for q in (1, 8) for c in (0, 64)]
    return CSV_HEADER + "".join(f"{b},{q},{c},{ms * q + c / 64},{ms},{ms * 2},5\n"
                                for b, q, c in rows if (b, q, c) != drop)


def profile_folder(meta: str = PROFILE_YAML, draft: str | None = None, target: str | None = None) -> dict:
    return {"myprof/profile.yaml": meta,
            "myprof/llama-160m.csv": grid_csv(1.0) if draft is None else draft,
            "myprof/llama2-7b.csv": grid_csv(10.0) if target is None else target}


ON_PROFILE = {"devices.gpu.profile": "myprof"}  # a folder next to the scenario


@dataclass
class Case:
    id: str
    field: str  # the field path exactly as the message must name it ("" for file-level problems)
    rule: str  # a fragment of the rule
    set: dict = dc_field(default_factory=dict)  # dotted path -> value, applied to a copy of BASE
    delete: tuple = ()  # dotted paths removed from the copy
    text: str | bytes | None = None  # raw scenario content instead of the mutated BASE
    name: str = "scenario.yaml"  # scenario file name (None: no scenario argument, the quickstart)
    write: bool = True  # False: the scenario file does not exist
    files: dict = dc_field(default_factory=dict)  # other files in the scenario's folder
    args: tuple = ()  # extra CLI arguments (--set ...)
    cmd: str = "run"  # a command, or a subcommand ("calibrate fit")
    source: str | None = None  # the file the message names; default the scenario's name
    chmod: dict = dc_field(default_factory=dict)  # file -> mode, set after writing
    env: dict = dc_field(default_factory=dict)  # environment variables for the command
    absent: str = ""  # text the message must not contain (a file's content)


def _steps(path: str) -> list:
    return [int(p) if p.isdigit() else p for p in path.split(".")]


def setp(data: dict, path: str, value: Any) -> None:
    *parents, last = _steps(path)
    node = data
    for p in parents:
        node = node[p]
    node[last] = copy.deepcopy(value)


def delp(data: dict, path: str) -> None:
    *parents, last = _steps(path)
    node = data
    for p in parents:
        node = node[p]
    del node[last]


CASES = [
    # ------------------------------------------------ the file itself
    Case("yaml_syntax", "", "not valid yaml", text="models: [1,\nseed: 2\n"),
    Case("yaml_python_tag_refused", "", "not valid yaml", text="!!python/object/apply:os.system ['echo hi']\n"),
    Case("json_syntax", "", "not valid json", text='{"models": {"draft": ', name="scenario.json"),
    Case("toml_syntax", "", "not valid toml", text="models = [\n", name="scenario.toml"),
    Case("top_level_list", "", "top level must be a mapping", text="- models\n- devices\n"),
    Case("top_level_list_json", "", "top level must be a mapping", text="[1, 2]", name="scenario.json"),
    Case("empty_file", "", "top level must be a mapping", text=""),
    Case("nested_too_deeply", "", "not valid yaml", text="models: " + "[" * 5000 + "]" * 5000 + "\n"),
    Case("not_utf8", "", "not UTF-8 text", text=b"name: \xff\xfe\x00\n"),
    Case("file_not_found", "", "cannot read file", name="nowhere.yaml", write=False),
    Case("file_not_found_validate", "", "cannot read file", name="nowhere.yaml", write=False, cmd="validate"),
    # ------------------------------------------------ schema: unknown and missing keys
    Case("unknown_top_level_key", "colour", "unknown key", set={"colour": "red"}),
    Case("unknown_nested_key", "strategy.gama", "unknown key", set={"strategy.gama": 6}),
    Case("unknown_key_in_link", "links.0.bandwith_mbps", "unknown key",
         set={**TWO_DEVICES, "links.0.bandwith_mbps": 5}),
    Case("unknown_key_in_inline_profile", "devices.gpu.profile.forward_mss", "unknown key",
         set={"devices.gpu.profile.forward_mss": {"draft": 1.0}}),
    Case("missing_required_nested", "strategy.target", "required field is missing", delete=("strategy.target",)),
    Case("missing_required_top_level", "models", "required field is missing", delete=("models",)),
    Case("missing_link_bandwidth", "links.0.bandwidth_mbps", "required field is missing",
         set=TWO_DEVICES, delete=("links.0.bandwidth_mbps",)),
    Case("missing_uniform_high", "workload.prompt_tokens.high", "required field is missing",
         set={"workload.prompt_tokens": {"kind": "uniform", "low": 4}}),
    # ------------------------------------------------ schema: values out of range or of the wrong type
    Case("negative_bandwidth", "links.0.bandwidth_mbps", "greater than 0",
         set={**TWO_DEVICES, "links.0.bandwidth_mbps": -5}),
    Case("zero_bandwidth", "links.0.bandwidth_mbps", "greater than 0", set={**TWO_DEVICES, "links.0.bandwidth_mbps": 0}),
    Case("bandwidth_not_a_number", "links.0.bandwidth_mbps", "valid number",
         set={**TWO_DEVICES, "links.0.bandwidth_mbps": "fast"}),
    Case("negative_latency", "links.0.latency_ms", "greater than or equal to 0",
         set={**TWO_DEVICES, "links.0.latency_ms": -1}),
    Case("infinite_latency", "links.0.latency_ms", "finite number",
         set={**TWO_DEVICES, "links.0.latency_ms": float("inf")}),
    Case("alpha_above_one", "acceptance.alpha", "less than or equal to 1", set={"acceptance.alpha": 1.5}),
    Case("alpha_below_zero", "acceptance.alpha", "greater than or equal to 0", set={"acceptance.alpha": -0.1}),
    Case("alpha_above_one_validate", "acceptance.alpha", "less than or equal to 1", set={"acceptance.alpha": 1.5},
         cmd="validate"),
    Case("alpha_nan", "acceptance.alpha", "finite number", set={"acceptance.alpha": float("nan")}),
    Case("negative_gamma", "strategy.gamma", "greater than or equal to 0", set={"strategy.gamma": -1}),
    Case("gamma_not_an_int", "strategy.gamma", "valid integer", set={"strategy.gamma": "four"}),
    Case("gamma_fractional", "strategy.gamma", "valid integer", set={"strategy.gamma": 2.5}),
    Case("gamma_boolean", "strategy.gamma", "valid integer", set={"strategy.gamma": True}),
    Case("users_boolean", "workload.arrival.users", "valid integer",
         set={"workload.arrival": {"kind": "closed_loop", "users": True}}),
    Case("gamma_too_large", "strategy.gamma", "less than or equal to 64", set={"strategy.gamma": 1000}),
    Case("negative_seed", "seed", "greater than or equal to 0", set={"seed": -3}),
    Case("zero_requests", "workload.requests", "greater than or equal to 1", set={"workload.requests": 0}),
    Case("zero_poisson_rate", "workload.arrival.rate_per_s", "greater than 0",
         set={"workload.arrival": {"kind": "poisson", "rate_per_s": 0}}),
    Case("infinite_duration", "workload.duration_s", "finite number",
         set={"workload.arrival": {"kind": "poisson", "rate_per_s": 5}, "workload.duration_s": float("inf")},
         delete=("workload.requests",)),
    Case("output_tokens_not_a_number", "workload.output_tokens", "valid integer",
         set={"workload.output_tokens": "many"}),
    Case("uniform_low_above_high", "workload.prompt_tokens", "low must be <= high",
         set={"workload.prompt_tokens": {"kind": "uniform", "low": 64, "high": 8}}),
    Case("lognormal_low_above_high", "workload.output_tokens", "low must be <= high",
         set={"workload.output_tokens": {"kind": "lognormal", "median": 32, "sigma": 0.5, "low": 64, "high": 8}}),
    Case("unknown_length_kind", "workload.output_tokens", "does not match any of the expected tags",
         set={"workload.output_tokens": {"kind": "zipf"}}),
    Case("choice_weights_mismatch", "workload.prompt_tokens.weights", "weights must match values",
         set={"workload.prompt_tokens": {"kind": "choice", "values": [8, 16], "weights": [1]}}),
    Case("empirical_counts_all_zero", "acceptance.counts", "must not all be zero",
         set={"acceptance": {"kind": "empirical", "counts": [0, 0, 0]}}),
    Case("per_position_alphas_empty", "acceptance.alphas", "at least 1 item",
         set={"acceptance": {"kind": "per_position", "alphas": []}}),
    Case("unknown_acceptance_kind", "acceptance", "does not match any of the expected tags",
         set={"acceptance": {"kind": "oracle"}}),
    Case("unknown_strategy_kind", "strategy", "does not match any of the expected tags",
         set={"strategy.kind": "lookahead"}),
    # ------------------------------------------------ models, devices, profiles, links
    Case("unknown_model_preset", "models.draft.preset", "unknown preset 'llama-9000'",
         set={"models.draft.preset": "llama-9000"}),
    Case("custom_model_incomplete", "models.draft", "a custom model needs", set={"models.draft": {"layers": 2}}),
    Case("strategy_unknown_model", "strategy.target.model", "unknown model 'big'",
         set={"strategy.target.model": "big"}),
    Case("strategy_unknown_device", "strategy.draft.device", "unknown device 'tpu'",
         set={"strategy.draft.device": "tpu"}),
    Case("unknown_profile_name", "devices.gpu.profile", "unknown profile 'no-such-gpu'",
         set={"devices.gpu.profile": "no-such-gpu"}),
    Case("unknown_profile_name_estimate", "devices.gpu.profile", "unknown profile 'no-such-gpu'",
         set={"devices.gpu.profile": "no-such-gpu"}, cmd="estimate"),
    Case("unknown_inline_profile_kind", "devices.gpu.profile", "does not match any of the expected tags",
         set={"devices.gpu.profile": {"kind": "magic"}}),
    Case("constant_profile_lacks_model_time", "devices.gpu.profile.forward_ms", "needs a time for model 'target'",
         set={"devices.gpu.profile.forward_ms": {"draft": 1.0}}),
    Case("negative_forward_ms", "devices.gpu.profile.forward_ms.draft", "greater than or equal to 0",
         set={"devices.gpu.profile.forward_ms.draft": -1.0}),
    Case("roofline_negative_peak", "devices.gpu.profile.peak_tflops", "greater than 0",
         set={"devices.gpu.profile": {"kind": "roofline", "peak_tflops": -1, "memory_bandwidth_gbps": 100}}),
    Case("link_to_missing_device", "links.0.b", "unknown device 'cloud'",
         set={**TWO_DEVICES, "links.0.b": "cloud"}),
    Case("link_to_itself", "links.0", "two different devices", set={**TWO_DEVICES, "links.0.b": "edge"}),
    Case("two_links_same_pair", "links.1", "a second link",
         set={**TWO_DEVICES, "links": TWO_DEVICES["links"] + [{"a": "gpu", "b": "edge", "bandwidth_mbps": 10}]}),
    Case("different_devices_without_link", "links", "need a link between them",
         set={**TWO_DEVICES, "links": []}),
    Case("memory_negative", "devices.gpu.memory_gb", "greater than 0", set={"devices.gpu.memory_gb": -8}),
    # ------------------------------------------------ numbers that are not finite
    Case("overhead_infinite", "devices.gpu.overheads.step_ms", "finite number",
         set={"devices.gpu.overheads": {"step_ms": float("inf")}}),
    Case("forward_nan", "devices.gpu.profile.forward_ms.target", "finite number",
         set={"devices.gpu.profile.forward_ms.target": float("nan")}),
    Case("memory_infinite", "devices.gpu.memory_gb", "finite number", set={"devices.gpu.memory_gb": float("inf")}),
    Case("lognormal_infinite_median", "workload.prompt_tokens.median", "finite number",
         set={"workload.prompt_tokens": {"kind": "lognormal", "median": float("inf"), "sigma": 1}}),
    Case("roofline_infinite_peak", "devices.gpu.profile.peak_tflops", "finite number",
         set={"devices.gpu.profile": {"kind": "roofline", "peak_tflops": float("inf"),
                                      "memory_bandwidth_gbps": float("inf"), "launch_overhead_us": 0}}),
    # ------------------------------------------------ a window in which nothing arrives
    Case("duration_without_arrivals", "workload.duration_s", "no request arrives",
         set={"workload": {"arrival": {"kind": "poisson", "rate_per_s": 0.5}, "duration_s": 0.1,
                           "prompt_tokens": 16, "output_tokens": 16}}),
    Case("duration_without_arrivals_estimate", "workload.duration_s", "no request arrives", cmd="estimate",
         set={"workload": {"arrival": {"kind": "poisson", "rate_per_s": 0.5}, "duration_s": 0.1,
                           "prompt_tokens": 16, "output_tokens": 16}}),
    # ------------------------------------------------ a custom profile folder
    Case("profile_grid_missing_point", "rows", "missing (1, 8, 64)", set=ON_PROFILE, source="llama2-7b.csv",
         files=profile_folder(target=grid_csv(10.0, drop=(1, 8, 64)))),
    Case("profile_grid_missing_point_estimate", "rows", "missing (1, 8, 64)", set=ON_PROFILE,
         source="llama2-7b.csv", files=profile_folder(target=grid_csv(10.0, drop=(1, 8, 64))), cmd="estimate"),
    Case("profile_csv_missing_column", "header", "missing column(s) latency_ms_p50", set=ON_PROFILE,
         source="llama-160m.csv", files=profile_folder(draft="batch,query_tokens,context_tokens\n1,1,0\n")),
    Case("profile_csv_not_a_number", "line 3", "must be numbers", set=ON_PROFILE, source="llama-160m.csv",
         files=profile_folder(draft=CSV_HEADER + "1,1,0,1.0,1,1,5\n1,1,lots,1.0,1,1,5\n")),
    Case("profile_csv_negative_latency", "line 2", "latency_ms_p50 > 0", set=ON_PROFILE, source="llama-160m.csv",
         files=profile_folder(draft=CSV_HEADER + "1,1,0,-1.0,1,1,5\n")),
    Case("profile_csv_no_rows", "rows", "no measurements", set=ON_PROFILE, source="llama-160m.csv",
         files=profile_folder(draft=CSV_HEADER)),
    Case("profile_yaml_bad_provenance", "provenance", "'measured' or 'derived'", set=ON_PROFILE,
         source="profile.yaml", files=profile_folder(meta=PROFILE_YAML.replace("measured", "guessed"))),
    Case("profile_yaml_unknown_key", "colour", "unknown key", set=ON_PROFILE, source="profile.yaml",
         files=profile_folder(meta=PROFILE_YAML + "colour: red\n")),
    Case("profile_yaml_missing_field", "memory_gb", "required field is missing", set=ON_PROFILE,
         source="profile.yaml", files=profile_folder(meta=PROFILE_YAML.replace("memory_gb: 80\n", ""))),
    Case("profile_yaml_syntax", "", "not valid YAML", set=ON_PROFILE, source="profile.yaml",
         files=profile_folder(meta="device: [Test GPU\n")),
    Case("profile_derived_without_roofline", "roofline", "needs roofline parameters", set=ON_PROFILE,
         source="profile.yaml", files=profile_folder(meta=PROFILE_YAML.replace("measured", "derived"))),
    Case("profile_lacks_model_measurements", "devices.gpu.profile", "no measurements for model 'target'",
         set=ON_PROFILE, files={"myprof/profile.yaml": PROFILE_YAML, "myprof/llama-160m.csv": grid_csv(1.0)}),
    # ------------------------------------------------ trace files
    Case("acceptance_trace_missing", "acceptance.path", "file not found",
         set={"acceptance": {"kind": "trace", "path": "accepted.txt"}}),
    Case("acceptance_trace_not_an_integer", "line 4", "accepted count must be an integer",
         set={"acceptance": {"kind": "trace", "path": "accepted.txt"}}, files={"accepted.txt": "1\n\n2\nmany\n"},
         source="accepted.txt"),
    Case("acceptance_trace_not_an_integer_validate", "line 2", "must be an integer",
         set={"acceptance": {"kind": "trace", "path": "accepted.txt"}}, files={"accepted.txt": "1\n2.5\n"},
         source="accepted.txt", cmd="validate"),
    Case("acceptance_trace_negative", "line 2", "must be >= 0",
         set={"acceptance": {"kind": "trace", "path": "accepted.txt"}}, files={"accepted.txt": "1\n-2\n"},
         source="accepted.txt"),
    Case("acceptance_trace_csv_without_column", "header", "'accepted' column",
         set={"acceptance": {"kind": "trace", "path": "accepted.csv"}}, files={"accepted.csv": "step,k\n1,2\n"},
         source="accepted.csv"),
    Case("acceptance_trace_empty", "", "empty",
         set={"acceptance": {"kind": "trace", "path": "accepted.txt"}}, files={"accepted.txt": "\n\n"},
         source="accepted.txt"),
    Case("acceptance_trace_not_utf8", "", "not UTF-8 text",
         set={"acceptance": {"kind": "trace", "path": "accepted.txt"}}, files={"accepted.txt": b"1\n\xff\xfe\n"},
         source="accepted.txt"),
    Case("arrival_trace_without_arrival_s", "header", "'arrival_s' column",
         set={"workload.arrival": {"kind": "trace", "path": "arrivals.csv"}},
         files={"arrivals.csv": "time,prompt_tokens\n0,8\n"}, source="arrivals.csv"),
    Case("arrival_trace_missing", "workload.arrival.path", "file not found",
         set={"workload.arrival": {"kind": "trace", "path": "arrivals.csv"}}),
    Case("arrival_trace_not_a_number", "line 3", "arrival_s must be a number",
         set={"workload.arrival": {"kind": "trace", "path": "arrivals.csv"}},
         files={"arrivals.csv": "arrival_s\n0.0\nsoon\n"}, source="arrivals.csv"),
    Case("arrival_trace_line_after_blank", "line 4", "arrival_s must be a number",
         set={"workload.arrival": {"kind": "trace", "path": "arrivals.csv"}},
         files={"arrivals.csv": "arrival_s\n0.0\n\nsoon\n"}, source="arrivals.csv"),
    Case("arrival_trace_nan", "line 2", "finite",
         set={"workload.arrival": {"kind": "trace", "path": "arrivals.csv"}},
         files={"arrivals.csv": "arrival_s\nnan\n"}, source="arrivals.csv"),
    Case("arrival_trace_negative_tokens", "line 2", "token counts >= 1",
         set={"workload.arrival": {"kind": "trace", "path": "arrivals.csv"}},
         files={"arrivals.csv": "arrival_s,prompt_tokens\n0.5,0\n"}, source="arrivals.csv"),
    Case("arrival_trace_no_rows", "", "no rows",
         set={"workload.arrival": {"kind": "trace", "path": "arrivals.csv"}},
         files={"arrivals.csv": "arrival_s\n"}, source="arrivals.csv"),
    # ------------------------------------------------ --set
    Case("set_without_equals", "strategy.gamma6", "expected dotted.key=value", args=("--set", "strategy.gamma6"),
         source="--set"),
    Case("set_without_key", "=6", "expected dotted.key=value", args=("--set", "=6"), source="--set"),
    Case("set_list_index_out_of_range", "links.3.bandwidth_mbps", "links has no item 3", set=TWO_DEVICES,
         args=("--set", "links.3.bandwidth_mbps=5"), source="--set"),
    Case("set_list_index_not_a_number", "links.first.bandwidth_mbps", "links has no item first", set=TWO_DEVICES,
         args=("--set", "links.first.bandwidth_mbps=5"), source="--set"),
    Case("set_into_a_scalar", "strategy.gamma.x", "strategy.gamma is not a mapping or list",
         args=("--set", "strategy.gamma.x=1"), source="--set"),
    Case("set_value_not_yaml", "acceptance.alpha", "value is not valid YAML", args=("--set", "acceptance.alpha=[0.5"),
         source="--set"),
    Case("set_value_out_of_range", "acceptance.alpha", "less than or equal to 1",
         args=("--set", "acceptance.alpha=2")),
    Case("set_unknown_key", "strategy.gama", "unknown key", args=("--set", "strategy.gama=6"), cmd="validate"),
    Case("set_on_quickstart", "strategy.gamma", "greater than or equal to 0", name=None,
         args=("--set", "strategy.gamma=-1"), source="quickstart"),
]


# ------------------------------------------------ helpers for the cases below

FIFO = object()  # in `files`: a named pipe (nothing ever writes to it)
BASE_YAML = yaml.safe_dump(BASE, sort_keys=False)
BIG = "9" * 5000  # more digits than Python reads as an integer (4,300)
ACC = {"acceptance": {"kind": "trace", "path": "accepted.txt"}}
ARR = {"workload.arrival": {"kind": "trace", "path": "arrivals.csv"}}
RUN = {"target": "llama-68m", "prompt_tokens": 16, "output_tokens": 8, "tokens_per_s": 100.0,
       "target_profile": "cpu-2core-torch-fp32"}
STREAM = {"kind": "serving", "target": "llama-68m", "alpha": 0.8, "max_batch": 4, "step_tokens": 512,
          "target_profile": "cpu-2core-torch-fp32", "requests": [[0.0, 16, 8, 0.1, 0.5]]}


def jsonl(*records, raw: str = "") -> str:
    """A measurement file: one JSON object per line (dicts are merged into RUN unless they hold `kind`)."""
    lines = [json.dumps(r if "kind" in r else {**RUN, **r}) for r in records]
    return "\n".join(lines) + "\n" + raw


def measured(cid: str, field: str, rule: str, content: str | bytes, cmd: str = "calibrate compare",
             extra: tuple = (), **kw) -> Case:
    """A bad measurement file given to a calibrate command; the message names runs.jsonl."""
    args = ("{tmp}/runs.jsonl",) + extra + (("--profile", "cpu-2core-torch-fp32") if cmd == "calibrate fit" else ())
    return Case(cid, field, rule, name=None, cmd=cmd, args=args, files={"runs.jsonl": content},
                source="runs.jsonl", **kw)


def yaml_with(old: str, new: str) -> str:
    assert old in BASE_YAML, old
    return BASE_YAML.replace(old, new, 1)


def prof(cid: str, field: str, rule: str, source: str, cmd: str = "validate", **folder) -> Case:
    """A bad profile folder next to the scenario; `source` is the file the message names."""
    return Case(cid, field, rule, set=ON_PROFILE, files=profile_folder(**folder), source=source, cmd=cmd)


def trace(cid: str, field: str, rule: str, content: str | bytes, kind: str = "arrival", **kw) -> Case:
    name = "arrivals.csv" if kind == "arrival" else "accepted.txt"
    return Case(cid, field, rule, set=ARR if kind == "arrival" else ACC, files={name: content}, source=name, **kw)


def usage(cid: str, field: str, rule: str, cmd: str, *args: str, **kw) -> Case:
    """A usage error: the message names the command as its source and the option as its field."""
    return Case(cid, field, rule, cmd=cmd, args=args, source=f"specsim {cmd}", **kw)


TREE = {"strategy": {"kind": "tree", "draft": {"model": "draft", "device": "gpu"},
                     "target": {"model": "target", "device": "gpu"}}}
BATCHED = {"strategy": {"kind": "batched", "target": {"model": "target", "device": "gpu"},
                        "draft": {"model": "draft", "device": "gpu"}}}
PIPE = {"devices.edge": {"profile": CONSTANT},
        "links": [{"a": "edge", "b": "gpu", "bandwidth_mbps": 100}],
        "strategy": {"kind": "pipeline", "model": "target", "stages": ["gpu", "edge"]}}
SHARED = {"devices.edge": {"profile": CONSTANT}, "links": [{"a": "edge", "b": "gpu", "bandwidth_mbps": 100}],
          "strategy": {"kind": "shared_verifier", "draft_model": "draft", "edges": ["edge"],
                       "target": {"model": "target", "device": "gpu"}}}
POISSON = {"workload.arrival": {"kind": "poisson", "rate_per_s": 5}}

CASES += [
    # ------------------------------------------------ sizes and kinds of file a reader must not take whole
    Case("scenario_is_dev_zero", "", "not a regular file", name=None, args=("/dev/zero",), cmd="validate",
         source="/dev/zero"),
    Case("scenario_is_dev_zero_run", "", "not a regular file", name=None, args=("/dev/zero",), source="/dev/zero"),
    Case("scenario_is_a_folder", "", "cannot read file", name=None, args=("{tmp}/myprof",), cmd="validate",
         files=profile_folder(), source="myprof"),
    Case("scenario_is_a_fifo", "", "not a regular file", name="fifo.yaml", write=False, cmd="validate",
         files={"fifo.yaml": FIFO}),
    Case("prompt_tokens_beyond_limit", "workload.prompt_tokens", "less than or equal to 1000000",
         set={"workload.prompt_tokens": 1_000_000_000}),
    Case("prompt_tokens_beyond_limit_validate", "workload.prompt_tokens", "less than or equal to 1000000",
         set={"workload.prompt_tokens": 1_000_000_000}, cmd="validate"),
    Case("output_tokens_beyond_limit_estimate", "workload.output_tokens", "less than or equal to 1000000",
         set={"workload.output_tokens": 10**12}, cmd="estimate"),
    Case("uniform_high_beyond_limit", "workload.prompt_tokens.high", "less than or equal to 1000000",
         set={"workload.prompt_tokens": {"kind": "uniform", "low": 1, "high": 10**9}}),
    Case("lognormal_high_beyond_limit", "workload.output_tokens.high", "less than or equal to 1000000",
         set={"workload.output_tokens": {"kind": "lognormal", "median": 64, "sigma": 1, "high": 10**8}}),
    Case("choice_value_beyond_limit", "workload.prompt_tokens.values.1", "less than or equal to 1000000",
         set={"workload.prompt_tokens": {"kind": "choice", "values": [8, 10**9]}}),
    Case("poisson_expects_too_many_requests", "workload.duration_s", "more than the limit of 10,000,000",
         set={"workload": {"arrival": {"kind": "poisson", "rate_per_s": 1e7}, "duration_s": 1000.0,
                           "prompt_tokens": 16, "output_tokens": 16}}),
    Case("poisson_expects_too_many_requests_validate", "workload.duration_s", "more than the limit", cmd="validate",
         set={"workload": {"arrival": {"kind": "poisson", "rate_per_s": 1e7}, "duration_s": 1000.0}}),
    Case("requests_beyond_limit", "workload.requests", "less than or equal to 10000000",
         set={"workload.requests": 10**9}),
    Case("users_beyond_limit", "workload.arrival.users", "less than or equal to 1000000",
         set={"workload.arrival": {"kind": "closed_loop", "users": 10_000_000}, "workload.requests": 5}),
    Case("link_loss_near_one", "links.0.loss", "less than or equal to 0.99",
         set={**TWO_DEVICES, "links.0.loss": 0.9999999}),
    Case("link_loss_one", "links.0.loss", "less than or equal to 0.99", set={**TWO_DEVICES, "links.0.loss": 1.0}),
    Case("link_loss_negative", "links.0.loss", "greater than or equal to 0", set={**TWO_DEVICES, "links.0.loss": -0.1}),
    # ------------------------------------------------ integers longer than Python reads (4,300 digits)
    Case("yaml_integer_too_long", "line 2", "an integer of 5000 digits", text=yaml_with("seed: 1", f"seed: {BIG}")),
    Case("yaml_integer_too_long_nested", "line 23", "at most 4300",
         text=yaml_with("gamma: 4", f"gamma: {BIG}"), cmd="validate"),
    Case("yaml_negative_integer_too_long", "line 2", "digits", text=yaml_with("seed: 1", f"seed: -{BIG}")),
    Case("json_integer_too_long", "", "an integer of 5000 digits", text='{"seed": ' + BIG + "}", name="scenario.json"),
    Case("toml_integer_too_long", "", "not valid toml", text=f"seed = {BIG}\n", name="scenario.toml"),
    Case("set_integer_too_long", "seed", "an integer of 5000 digits", args=("--set", f"seed={BIG}"), source="--set"),
    Case("set_integer_too_long_in_list", "acceptance", "digits", source="--set",
         args=("--set", f"acceptance={{kind: trace, counts: [{BIG}]}}")),
    Case("grid_integer_too_long", "strategy.gamma", "an integer of 5000 digits", cmd="sweep",
         args=("--grid", f"strategy.gamma=2,{BIG}"), source="--grid"),
    Case("profile_yaml_integer_too_long", "line 5", "digits", set=ON_PROFILE, source="profile.yaml",
         files=profile_folder(meta=PROFILE_YAML.replace("memory_gb: 80", f"memory_gb: {BIG}"))),
    Case("profile_csv_integer_too_long", "line 2", "finite numbers", set=ON_PROFILE, source="llama-160m.csv",
         files=profile_folder(draft=CSV_HEADER + f"{BIG},1,0,1.0,1,1,5\n")),
    Case("arrival_trace_integer_too_long", "line 2", "token counts integers",
         set=ARR, files={"arrivals.csv": f"arrival_s,prompt_tokens\n0.0,{BIG}\n"}, source="arrivals.csv"),
    measured("measured_integer_too_long", "line 1", "an integer of 5000 digits",
             '{"target": "llama-68m", "prompt_tokens": ' + BIG + "}\n"),
    measured("measured_integer_too_long_fit", "line 2", "digits", jsonl({}, raw='{"gamma": ' + BIG + "}\n"),
             cmd="calibrate fit"),
    # ------------------------------------------------ dates YAML reads as dates
    Case("invalid_date_as_name", "line 1", "'2024-13-45' is not a valid date",
         text=yaml_with("name: bad-input-base", "name: 2024-13-45")),
    Case("invalid_date_as_name_validate", "line 1", "not a valid date", cmd="validate",
         text=yaml_with("name: bad-input-base", "name: 2024-02-30")),
    Case("invalid_datetime_as_name", "line 1", "not a valid date",
         text=yaml_with("name: bad-input-base", "name: 2024-01-01 25:00:00")),
    Case("valid_date_as_name", "name", "valid string", text=yaml_with("name: bad-input-base", "name: 2024-01-05")),
    Case("set_invalid_date", "name", "not a valid date", args=("--set", "name=2024-13-45"), source="--set"),
    Case("profile_yaml_invalid_date", "line 6", "'2024-13-45' is not a valid date", set=ON_PROFILE,
         source="profile.yaml", files=profile_folder(meta=PROFILE_YAML + "date: 2024-13-45\n")),
    Case("profile_yaml_invalid_date_profiles", "line 6", "not a valid date", name=None, cmd="profiles",
         env={"SPECSIM_PROFILE_PATH": "{tmp}"}, source="profile.yaml",
         files=profile_folder(meta=PROFILE_YAML + "date: 2024-13-45\n")),
    Case("profile_yaml_unquoted_date", "date", "valid string", set=ON_PROFILE, source="profile.yaml",
         files=profile_folder(meta=PROFILE_YAML + "date: 2024-01-05\n")),
    # ------------------------------------------------ a key given twice
    Case("yaml_duplicate_top_level_key", "seed", "duplicate key on line 31 (first on line 2)",
         text=BASE_YAML + "seed: 5\n"),
    Case("yaml_duplicate_nested_key", "gamma", "duplicate key", text=yaml_with("gamma: 4", "gamma: 4\n  gamma: 8")),
    Case("yaml_duplicate_key_in_flow_mapping", "alpha", "duplicate key",
         text=yaml_with("acceptance:\n  kind: iid\n  alpha: 0.8", "acceptance: {kind: iid, alpha: 0.8, alpha: 0.2}")),
    Case("yaml_duplicate_model_name", "draft", "duplicate key",
         text=yaml_with("models:\n", "models:\n  draft: {preset: llama-68m}\n")),
    Case("yaml_duplicate_key_validate", "workload", "duplicate key", cmd="validate",
         text=BASE_YAML + "workload: {requests: 1}\n"),
    Case("json_duplicate_top_level_key", "seed", "duplicate key", name="scenario.json",
         text=json.dumps(BASE)[:-1] + ', "seed": 2}'),
    Case("json_duplicate_nested_key", "gamma", "duplicate key", name="scenario.json",
         text=json.dumps(BASE).replace('"gamma": 4', '"gamma": 4, "gamma": 9')),
    Case("toml_duplicate_key", "", "not valid toml", name="scenario.toml", text="seed = 1\nseed = 2\n"),
    Case("set_value_duplicate_key", "acceptance", "duplicate key", source="--set",
         args=("--set", "acceptance={kind: iid, alpha: 0.5, alpha: 0.9}")),
    Case("grid_value_duplicate_key", "acceptance", "duplicate key", cmd="sweep", source="--grid",
         args=("--grid", "acceptance={kind: iid, alpha: 0.5, alpha: 0.9},{kind: iid, alpha: 0.7}")),
    Case("profile_yaml_duplicate_key", "memory_gb", "duplicate key", set=ON_PROFILE, source="profile.yaml",
         files=profile_folder(meta=PROFILE_YAML + "memory_gb: 40\n")),
    measured("measured_duplicate_key", "line 1: tokens_per_s", "duplicate key",
             json.dumps(RUN)[:-1] + ', "tokens_per_s": 5}\n'),
    # ------------------------------------------------ numbers that overflow a sum
    Case("choice_weights_overflow", "workload.prompt_tokens.weights", "finite sum",
         set={"workload.prompt_tokens": {"kind": "choice", "values": [8, 16], "weights": [1e308, 1e308]}}),
    Case("choice_weights_overflow_estimate", "workload.output_tokens.weights", "finite sum", cmd="estimate",
         set={"workload.output_tokens": {"kind": "choice", "values": [8, 16], "weights": [1e308, 1e308]}}),
    Case("empirical_counts_overflow", "acceptance.counts", "finite sum",
         set={"acceptance": {"kind": "empirical", "counts": [1e308, 1e308, 1e308]}}),
    Case("empirical_counts_infinite", "acceptance.counts.1", "finite number",
         set={"acceptance": {"kind": "empirical", "counts": [1, float("inf")]}}),
    Case("custom_model_head_size_zero_batched", "models.target.heads", "head size hidden // heads is 0",
         set={"models.target": {"layers": 2, "hidden": 8, "heads": 16, "ffn": 8}, **BATCHED}),
    Case("custom_model_head_size_zero", "models.draft.heads", "must be at least heads",
         set={"models.draft": {"layers": 2, "hidden": 8, "heads": 16, "ffn": 8}}),
    Case("preset_heads_beyond_hidden", "models.draft.heads", "head size", set={"models.draft.heads": 10000}),
    # ------------------------------------------------ traces: long fields, short and long rows, content not echoed
    trace("arrival_trace_field_too_long", "line 2", "a field longer than 128 KiB",
          "arrival_s,prompt_tokens\n0.0," + "1" * (200 * 1024) + "\n"),
    trace("arrival_trace_row_short", "line 3", "fewer fields than the header",
          "prompt_tokens,arrival_s\n8,0.0\n8\n"),
    trace("arrival_trace_row_short_validate", "line 2", "fewer fields", "output_tokens,arrival_s\n4\n",
          cmd="validate"),
    trace("arrival_trace_row_long", "line 2", "more fields than the header", "arrival_s\n0.0,1,2\n"),
    trace("arrival_trace_tokens_beyond_limit", "line 2", "<= 1,000,000",
          "arrival_s,output_tokens\n0.0,2000000000\n"),
    trace("arrival_trace_infinite", "line 2", "finite", "arrival_s\ninf\n"),
    trace("arrival_trace_negative_time", "line 3", "finite and >= 0", "arrival_s\n0.0\n-1.5\n"),
    trace("arrival_trace_fractional_tokens", "line 2", "token counts integers", "arrival_s,prompt_tokens\n0.0,7.5\n"),
    trace("arrival_trace_not_utf8", "", "not UTF-8 text", b"arrival_s\n\xff\xfe\n"),
    trace("arrival_trace_empty_file", "header", "'arrival_s' column", ""),
    Case("arrival_trace_is_a_device", "workload.arrival.path", "file not found: /dev/zero",
         set={"workload.arrival": {"kind": "trace", "path": "/dev/zero"}}),
    Case("arrival_trace_is_a_folder", "workload.arrival.path", "file not found",
         set={"workload.arrival": {"kind": "trace", "path": "myprof"}}, files=profile_folder()),
    trace("acceptance_trace_field_too_long", "line 2", "a field longer than 128 KiB",
          "accepted\n" + "1" * (200 * 1024) + "\n", kind="acceptance"),
    trace("acceptance_trace_content_not_echoed", "line 2", "accepted count must be an integer",
          "1\nhunter2-secret\n", kind="acceptance", absent="hunter2"),
    trace("acceptance_trace_csv_content_not_echoed", "line 2", "in the 'accepted' column",
          "accepted,note\nprivate-token-123,x\n", kind="acceptance", absent="private-token"),
    trace("acceptance_trace_csv_row_short", "line 2", "in the 'accepted' column", "note,accepted\nx\n",
          kind="acceptance"),
    Case("acceptance_trace_other_file_not_echoed", "header", "'accepted' column", absent="provenance",
         set={"acceptance": {"kind": "trace", "path": "myprof/profile.yaml"}}, files=profile_folder(),
         source="profile.yaml"),
    Case("acceptance_trace_is_a_device", "acceptance.path", "file not found: /dev/zero",
         set={"acceptance": {"kind": "trace", "path": "/dev/zero"}}),
    trace("acceptance_trace_two_numbers_on_a_line", "line 2", "must be an integer", "1\n3 4\n", kind="acceptance"),
    trace("acceptance_trace_negative_first", "line 1", "must be >= 0", "-1\n2\n", kind="acceptance"),
    trace("acceptance_trace_header_only", "", "empty", "accepted\n", kind="acceptance"),
    Case("acceptance_counts_negative", "acceptance.counts.0", "greater than or equal to 0",
         set={"acceptance": {"kind": "trace", "counts": [-1, 2]}}),
    Case("acceptance_path_and_counts", "acceptance", "give either path or counts",
         set={"acceptance": {"kind": "trace", "path": "accepted.txt", "counts": [1]}}, files={"accepted.txt": "1\n"}),
    Case("acceptance_neither_path_nor_counts", "acceptance", "give either path or counts",
         set={"acceptance": {"kind": "trace"}}),
    # ------------------------------------------------ profile folders
    prof("profile_csv_field_too_long", "line 2", "a field longer than 128 KiB", "llama-160m.csv",
         draft=CSV_HEADER + "1,1,0," + "1" * (200 * 1024) + ",1,1,5\n"),
    prof("profile_csv_row_short", "line 2", "fewer fields than the header", "llama-160m.csv",
         draft=CSV_HEADER + "1,1,0,1.0\n"),
    prof("profile_csv_row_long", "line 2", "more fields than the header", "llama2-7b.csv",
         target=CSV_HEADER + "1,1,0,1.0,1,1,5,extra\n"),
    prof("profile_csv_conflicting_duplicate", "line 6", "point (1, 1, 0) is measured again (first on line 2)",
         "llama-160m.csv", draft=grid_csv(1.0) + "1,1,0,99,1,1,5\n"),
    prof("profile_csv_conflicting_duplicate_run", "line 6", "measured again", "llama2-7b.csv", cmd="run",
         target=grid_csv(10.0) + "1,8,64,1.5,1,1,5\n"),
    prof("profile_csv_not_utf8", "", "not UTF-8 text", "llama-160m.csv", draft=b"batch\xff\n"),
    prof("profile_csv_nan_latency", "line 2", "finite numbers", "llama-160m.csv",
         draft=CSV_HEADER + "1,1,0,nan,1,1,5\n"),
    prof("profile_csv_zero_batch", "line 2", "batch >= 1", "llama-160m.csv", draft=CSV_HEADER + "0,1,0,1.0,1,1,5\n"),
    prof("profile_csv_negative_context", "line 2", "context_tokens >= 0", "llama-160m.csv",
         draft=CSV_HEADER + "1,1,-4,1.0,1,1,5\n"),
    prof("profile_csv_empty_file", "header", "missing column(s) batch", "llama-160m.csv", draft=""),
    prof("profile_csv_zero_latency_estimate", "line 2", "latency_ms_p50 > 0", "llama2-7b.csv", cmd="estimate",
         target=CSV_HEADER + "1,1,0,0,1,1,5\n"),
    prof("profile_yaml_not_utf8", "", "not UTF-8 text", "profile.yaml", meta=b"device: \xff\n"),
    prof("profile_yaml_top_level_list", "", "valid dictionary", "profile.yaml", meta="- device\n"),
    prof("profile_yaml_empty", "", "valid dictionary", "profile.yaml", meta=""),
    prof("profile_yaml_negative_memory", "memory_gb", "greater than 0", "profile.yaml",
         meta=PROFILE_YAML.replace("memory_gb: 80", "memory_gb: -1")),
    prof("profile_yaml_infinite_memory", "memory_gb", "finite number", "profile.yaml",
         meta=PROFILE_YAML.replace("memory_gb: 80", "memory_gb: .inf")),
    prof("profile_yaml_bad_execution", "execution", "'graph' or 'eager'", "profile.yaml",
         meta=PROFILE_YAML + "execution: jit\n"),
    prof("profile_yaml_zero_threads", "threads", "greater than 0", "profile.yaml", meta=PROFILE_YAML + "threads: 0\n"),
    prof("profile_yaml_negative_overhead", "overheads.step_ms", "greater than or equal to 0", "profile.yaml",
         meta=PROFILE_YAML + "overheads: {step_ms: -1}\n"),
    prof("profile_yaml_unknown_overhead", "overheads.setp_ms", "unknown key", "profile.yaml",
         meta=PROFILE_YAML + "overheads: {setp_ms: 1}\n"),
    prof("profile_yaml_grid_from_unknown", "grid_from", "unknown profile 'nowhere'", "profile.yaml",
         meta=PROFILE_YAML + "grid_from: nowhere\n"),
    prof("profile_yaml_roofline_bad_efficiency", "roofline.compute_efficiency", "less than or equal to 1",
         "profile.yaml", meta=PROFILE_YAML.replace("measured", "derived")
         + "roofline: {peak_tflops: 100, memory_bandwidth_gbps: 1000, compute_efficiency: 2}\n"),
    prof("profile_yaml_pass_spread_negative", "pass_disagreement.llama-160m.median", "greater than or equal to 0",
         "profile.yaml", meta=PROFILE_YAML + "pass_disagreement: {llama-160m: {median: -1, p90: 0}}\n"),
    prof("profile_yaml_python_tag", "", "not valid YAML", "profile.yaml",
         meta="!!python/object/apply:os.system ['echo hi']\n"),
    prof("profile_yaml_sources_not_a_list", "sources", "valid list", "profile.yaml",
         meta=PROFILE_YAML + "sources: a datasheet\n"),
    Case("profile_yaml_unreadable", "", "cannot read profile.yaml", set=ON_PROFILE, source="profile.yaml",
                      files=profile_folder(), chmod={"myprof/profile.yaml": 0}),
    Case("profile_csv_unreadable", "", "cannot read profile CSV", set=ON_PROFILE,
                      source="llama-160m.csv", files=profile_folder(), chmod={"myprof/llama-160m.csv": 0}),
    Case("scenario_unreadable", "", "cannot read file", chmod={"scenario.yaml": 0}),
    Case("profiles_list_bad_meta", "provenance", "'measured' or 'derived'", name=None, cmd="profiles",
         env={"SPECSIM_PROFILE_PATH": "{tmp}"}, source="profile.yaml",
         files=profile_folder(meta=PROFILE_YAML.replace("measured", "guessed"))),
    Case("profiles_list_bad_yaml_json", "", "not valid YAML", name=None, cmd="profiles", args=("--json",),
         env={"SPECSIM_PROFILE_PATH": "{tmp}"}, source="profile.yaml", files=profile_folder(meta="device: [x\n")),
    Case("profiles_list_duplicate_key", "dtype", "duplicate key", name=None, cmd="profiles",
         env={"SPECSIM_PROFILE_PATH": "{tmp}"}, source="profile.yaml", files=profile_folder(meta=PROFILE_YAML + "dtype: fp8\n")),
    # ------------------------------------------------ measurement files (JSON lines) for calibrate compare and fit
    measured("measured_not_utf8", "", "not UTF-8 text", b'{"target": "llama-68m"}\n\xff\xfe\x00\n'),
    measured("measured_not_utf8_fit", "", "not UTF-8 text", b"\x89PNG\r\n\x1a\n\x00\x00", cmd="calibrate fit"),
    measured("measured_missing_file", "", "cannot read measurement file", None),
    measured("measured_not_json", "line 1", "not valid JSON", "target=llama-68m\n"),
    measured("measured_truncated_line", "line 2", "not valid JSON", jsonl({}, raw='{"target": "llama-68m", \n')),
    measured("measured_infinite_rate_fit", "line 1: tokens_per_s", "finite number",
             jsonl({}).replace("100.0", "Infinity"), cmd="calibrate fit"),
    measured("measured_nan_rate_fit", "line 1: tokens_per_s", "finite number",
             jsonl({}).replace("100.0", "NaN"), cmd="calibrate fit"),
    measured("measured_overflowing_rate_fit", "line 1: tokens_per_s", "finite number",
             jsonl({}).replace("100.0", "1e999"), cmd="calibrate fit"),
    measured("measured_nan_rate", "line 1: tokens_per_s", "finite number", jsonl({}).replace("100.0", "NaN")),
    measured("measured_zero_rate", "line 1: tokens_per_s", "greater than 0", jsonl({"tokens_per_s": 0})),
    measured("measured_missing_target", "line 1: target", "Field required",
             json.dumps({k: v for k, v in RUN.items() if k != "target"}) + "\n"),
    measured("measured_missing_profile_fit", "line 1: target_profile", "Field required", cmd="calibrate fit",
             content=json.dumps({k: v for k, v in RUN.items() if k != "target_profile"}) + "\n"),
    measured("measured_zero_prompt", "line 1: prompt_tokens", "greater than or equal to 1", jsonl({"prompt_tokens": 0})),
    measured("measured_negative_gamma", "line 1: gamma", "greater than or equal to 0", jsonl({"gamma": -1})),
    measured("measured_alpha_above_one", "line 1: alpha", "less than or equal to 1", jsonl({"alpha": 1.5})),
    measured("measured_unknown_mode", "line 1: mode", "'autoregressive', 'greedy', 'oracle' or 'sampling'",
             jsonl({"mode": "beam"})),
    measured("measured_unknown_engine", "line 1: engine", "'specsim' or 'hf'", jsonl({"engine": "vllm"})),
    measured("measured_speculative_without_acceptance", "line 1: run", "needs accepted",
             jsonl({"draft": "llama-68m", "gamma": 4})),
    measured("measured_accepted_not_integers", "line 1: accepted.0", "valid integer",
             jsonl({"draft": "llama-68m", "gamma": 4, "accepted": ["a"]})),
    measured("measured_bad_second_line", "line 3", "not valid JSON", jsonl({}, {}, raw="}\n")),
    measured("measured_empty_file", "", "no runs", ""),
    measured("measured_only_blank_lines_fit", "", "no runs", "\n\n", cmd="calibrate fit"),
    measured("measured_top_level_list", "line 1: run", "valid dictionary", "[1, 2]\n"),
    measured("measured_nested_too_deeply", "line 1", "not valid JSON", "[" * 100000 + "]" * 100000 + "\n"),
    Case("measured_is_a_device", "", "not a regular file", name=None, cmd="calibrate compare", args=("/dev/zero",),
         source="/dev/zero"),
    measured("stream_infinite_time", "line 1: requests.0.4", "finite number",
             json.dumps({**STREAM, "requests": [[0.0, 16, 8, 0.1, float("inf")]]}) + "\n"),
    measured("stream_nan_alpha_fit", "line 1: alpha", "finite number", cmd="calibrate fit",
             content=json.dumps({**STREAM, "alpha": float("nan")}) + "\n"),
    measured("stream_no_requests", "line 1: requests", "at least 1 item", json.dumps({**STREAM, "requests": []}) + "\n"),
    measured("stream_short_request", "line 1: requests.0.2", "Field required", json.dumps({**STREAM, "requests": [[0.0, 16]]}) + "\n"),
    measured("stream_zero_max_batch", "line 1: max_batch", "greater than or equal to 1",
             json.dumps({**STREAM, "max_batch": 0}) + "\n"),
    measured("stream_missing_alpha", "line 1: alpha", "Field required",
             json.dumps({k: v for k, v in STREAM.items() if k != "alpha"}) + "\n"),
    Case("compare_out_is_a_file", "", "--out must be a folder", name=None, cmd="calibrate compare",
         args=("{tmp}/runs.jsonl", "--out", "{tmp}/report.txt"), files={"runs.jsonl": jsonl({}), "report.txt": "x"},
         source="report.txt"),
    Case("fit_out_under_a_file", "", "is a file", name=None, cmd="calibrate fit",
         args=("{tmp}/runs.jsonl", "--profile", "cpu-2core-torch-fp32", "--out", "{tmp}/report.txt/sub"),
         files={"runs.jsonl": jsonl({}), "report.txt": "x"}, source="sub"),
]

CASES += [
    # ------------------------------------------------ usage errors: one line, naming the command and the option
    usage("usage_repeats_not_a_number", "--repeats", "valid integer", "sweep", "--repeats", "abc",
          name="scenario.yaml"),
    usage("usage_unknown_option_run", "--bogus", "No such option", "run", "--bogus"),
    usage("usage_unknown_option_validate", "--colour", "No such option", "validate", "--colour", "red"),
    usage("usage_missing_scenario_validate", "", "Missing argument", "validate", name=None),
    usage("usage_missing_scenario_sweep", "", "Missing argument", "sweep", name=None),
    Case("usage_option_without_value", "--set", "requires an argument", cmd="validate", args=("--set",),
         source="specsim"),
    usage("usage_timeline_ms_not_a_number", "--timeline-ms", "valid number", "run", "--timeline-ms", "soon"),
    usage("usage_workers_not_a_number", "--workers", "valid integer", "sweep", "--workers", "many"),
    usage("usage_tolerance_not_a_number", "--tolerance", "valid number", "plan", "--tolerance", "tight"),
    usage("usage_percentile_not_a_number", "--percentile", "valid number", "plan", "--percentile", "p99"),
    usage("usage_unknown_option_estimate", "--jsn", "No such option", "estimate", "--jsn"),
    usage("usage_unknown_option_models", "--all", "No such option", "models", "--all", name=None),
    usage("usage_unknown_option_profiles", "--verbose", "No such option", "profiles", "--verbose", name=None),
    usage("usage_unknown_option_schema", "--yaml", "No such option", "schema", "--yaml", name=None),
    usage("usage_extra_argument_validate", "", "unexpected extra argument", "validate", "second.yaml"),
    usage("usage_compare_without_files", "", "Missing argument", "calibrate compare", name=None),
    usage("usage_fit_without_profile", "--profile", "Missing option", "calibrate fit", "{tmp}/runs.jsonl",
          name=None, files={"runs.jsonl": jsonl({})}),
    usage("usage_unknown_calibrate_command", "", "No such command 'fitt'", "calibrate", "fitt", name=None),
    Case("usage_unknown_command", "", "No such command 'simulate'", cmd="simulate", name=None, source="specsim"),
    usage("usage_profile_passes_zero", "--passes", "greater than or equal to 1", "profile", "--passes", "0",
          "--out", "{tmp}/p", name=None),
    usage("usage_profile_without_out", "--out", "Missing option", "profile", name=None),
    # ------------------------------------------------ what the user typed, echoed safely on one line
    Case("set_key_with_newline", "a\\nb", "unknown key", args=("--set", "a\nb=1")),
    Case("set_key_with_ansi_escape", "\\x1b[31mred", "unknown key", args=("--set", "\x1b[31mred=1")),
    Case("set_key_with_rtl_override", "\\u202eeman", "unknown key", args=("--set", "\u202eeman=1")),
    Case("yaml_key_with_ansi_escape", "\\x1b[2J", "unknown key", text=BASE_YAML + '"\\e[2J": 1\n'),
    Case("yaml_key_with_newline", "models.a\\nb.preset", "unknown preset", text=yaml_with("models:\n", 'models:\n  "a\\nb": {preset: nope}\n')),
    Case("preset_with_ansi_escape", "models.draft.preset", "unknown preset '\\x1b[31mx'",
         set={"models.draft.preset": "\x1b[31mx"}),
    Case("set_path_with_tab", "strategy.\\tgamma", "unknown key", args=("--set", "strategy.\tgamma=4")),
    Case("grid_key_with_newline", "a\\nb", "unknown key", cmd="sweep", args=("--grid", "a\nb=1,2")),
    # ------------------------------------------------ output paths
    Case("timeline_is_a_folder", "", "--timeline must be a .png file", args=("--timeline", "{tmp}/t.png"),
         files={"t.png/keep": "x"}, source="t.png"),
    Case("timeline_not_png", "", "--timeline must be a .png file", args=("--timeline", "{tmp}/t.svg"), source="t.svg"),
    Case("timeline_folder_missing", "", "in an existing folder", args=("--timeline", "{tmp}/no/t.png"), source="t.png"),
    Case("timeline_ms_nan", "timeline_ms", "finite number of ms > 0",
         args=("--timeline", "{tmp}/t.png", "--timeline-ms", "nan"), source="--timeline-ms"),
    Case("timeline_ms_negative", "timeline_ms", "> 0", args=("--timeline", "{tmp}/t.png", "--timeline-ms", "-5"),
         source="--timeline-ms"),
    Case("timeline_ms_infinite", "timeline_ms", "finite", args=("--timeline", "{tmp}/t.png", "--timeline-ms", "inf"),
         source="--timeline-ms"),
    Case("out_is_a_file", "", "--out must be a folder", args=("--out", "{tmp}/o.txt"), files={"o.txt": "keep"},
         source="o.txt"),
    Case("sweep_out_is_a_file", "", "--out must be a folder", cmd="sweep", args=("--out", "{tmp}/o.txt"),
         files={"o.txt": "keep"}, source="o.txt"),
    Case("plan_out_under_a_file", "", "is a file", cmd="plan", args=("--slo-ttft-ms", "100", "--out", "{tmp}/o.txt/x"),
         files={"o.txt": "keep"}, source="x"),
    # ------------------------------------------------ sweep and plan options
    Case("grid_without_equals", "strategy.gamma", "expected dotted.key=v1,v2", cmd="sweep",
         args=("--grid", "strategy.gamma"), source="--grid"),
    Case("grid_empty_value", "strategy.gamma", "empty value in the list", cmd="sweep",
         args=("--grid", "strategy.gamma=2,,4"), source="--grid"),
    Case("grid_value_twice", "strategy.gamma", "a value is listed twice", cmd="sweep",
         args=("--grid", "strategy.gamma=2,2"), source="--grid"),
    Case("grid_key_twice", "strategy.gamma", "the key is given twice", cmd="sweep",
         args=("--grid", "strategy.gamma=2,4", "--grid", "strategy.gamma=8"), source="--grid"),
    Case("grid_value_not_yaml", "acceptance.alpha", "is not valid YAML", cmd="sweep",
         args=("--grid", "acceptance.alpha=[0.5,0.6"), source="--grid"),
    Case("grid_value_out_of_range", "acceptance.alpha", "(in the configuration acceptance.alpha=1.5)", cmd="sweep",
         args=("--grid", "acceptance.alpha=0.5,1.5")),
    Case("grid_unknown_key", "strategy.gama", "unknown key", cmd="sweep", args=("--grid", "strategy.gama=2,4")),
    Case("grid_unknown_profile", "devices.gpu.profile", "unknown profile 'nope'", cmd="sweep",
         args=("--grid", "devices.gpu.profile=nope")),
    Case("sweep_repeats_zero", "", "must be >= 1", cmd="sweep", args=("--repeats", "0"), source="--repeats"),
    Case("sweep_workers_zero", "", ">= 1", cmd="sweep", args=("--workers", "0"), source="--workers"),
    Case("sweep_set_unknown_key", "colour", "unknown key", cmd="sweep", args=("--set", "colour=red")),
    Case("plan_without_slo", "slo", "needs a target", cmd="plan"),
    Case("plan_slo_negative", "", "must be > 0", cmd="plan", args=("--slo-ttft-ms", "-1"), source="--slo-ttft-ms"),
    Case("plan_slo_nan", "", "must be > 0", cmd="plan", args=("--slo-tpot-ms", "nan"), source="--slo-tpot-ms"),
    Case("plan_percentile_100", "", "must be > 0 and < 100", cmd="plan",
         args=("--slo-ttft-ms", "100", "--percentile", "100"), source="--percentile"),
    Case("plan_tolerance_one", "", "must be > 0 and < 1", cmd="plan", args=("--slo-ttft-ms", "100", "--tolerance", "1"),
         source="--tolerance"),
    Case("plan_slo_not_a_mapping", "slo", "must be a mapping", cmd="plan", set={"slo": 5}),
    Case("plan_search_without_values", "strategy.gamma=", "expected dotted.key=v1,v2", cmd="plan",
         args=("--slo-ttft-ms", "100", "--search", "strategy.gamma="), source="--search"),
    Case("plan_search_bad_value", "strategy.gamma", "less than or equal to 64", cmd="plan",
         args=("--slo-ttft-ms", "100", "--search", "strategy.gamma=4,100")),
    # ------------------------------------------------ more of the schema: strategies, links, SLOs, lengths
    Case("slo_percentile_zero", "slo.percentile", "greater than 0", set={"slo": {"ttft_ms": 100, "percentile": 0}}),
    Case("slo_ttft_negative", "slo.ttft_ms", "greater than 0", set={"slo": {"ttft_ms": -5}}),
    Case("slo_unknown_key", "slo.ttft", "unknown key", set={"slo": {"ttft": 100}}),
    Case("tree_branching_zero", "strategy.branching.1", "greater than or equal to 1",
         set={**TREE, "strategy.branching": [2, 0]}),
    Case("tree_decay_zero", "strategy.top_k_decay", "greater than 0", set={**TREE, "strategy.top_k_decay": 0}),
    Case("batched_max_batch_zero", "strategy.max_batch", "greater than or equal to 1",
         set={**BATCHED, "strategy.max_batch": 0}),
    Case("batched_unknown_policy", "strategy.speculation.policy", "'fixed', 'goodput', 'adaptive' or 'off_under_load'",
         set={**BATCHED, "strategy.speculation": {"policy": "greedy"}}),
    Case("batched_step_tokens_too_large", "strategy.step_tokens", "less than or equal to 1000000",
         set={**BATCHED, "strategy.step_tokens": 10**9}),
    Case("batched_weights_fill_memory", "devices.gpu.memory_gb", "leave no room for a KV cache",
         set={**BATCHED, "devices.gpu.memory_gb": 1}),
    Case("pipeline_layers_wrong_sum", "strategy.layers", "sum", set={**PIPE, "strategy.layers": [1, 1]}),
    Case("shared_verifier_no_edges", "strategy.edges", "at least 1 item", set={**SHARED, "strategy.edges": []}),
    Case("shared_verifier_unknown_policy", "strategy.policy", "'fair', 'proportional' or 'goodspeed'",
         set={**SHARED, "strategy.policy": "lifo"}),
    Case("shared_verifier_goodspeed_without_budget", "strategy.verify_tokens", "policy goodspeed allocates",
         set={**SHARED, "strategy.policy": "goodspeed"}),
    Case("shared_verifier_edge_alpha_above_one", "strategy.edges.0.alpha", "less than or equal to 1",
         set={**SHARED, "strategy.edges": [{"device": "edge", "alpha": 1.5}]}),
    Case("link_unknown_jitter_kind", "links.0.jitter_kind", "'normal', 'exponential' or 'uniform'",
         set={**TWO_DEVICES, "links.0.jitter_kind": "pareto"}),
    Case("link_header_bytes_negative", "links.0.header_bytes", "greater than or equal to 0",
         set={**TWO_DEVICES, "links.0.header_bytes": -1}),
    Case("link_empty_medium", "links.0.medium", "at least 1 character", set={**TWO_DEVICES, "links.0.medium": ""}),
    Case("draft_payload_unknown", "strategy.draft_payload", "'ids', 'ids_probs' or 'full_dist'",
         set={"strategy.draft_payload": "logits"}),
    Case("loop_unknown_prefill", "strategy.loop.prefill", "'separate' or 'merged'",
         set={"strategy.loop": {"prefill": "chunked"}}),
    Case("think_ms_negative", "workload.arrival.think_ms", "greater than or equal to 0",
         set={"workload.arrival": {"kind": "closed_loop", "think_ms": -1}}),
    Case("lognormal_sigma_negative", "workload.prompt_tokens.sigma", "greater than or equal to 0",
         set={"workload.prompt_tokens": {"kind": "lognormal", "median": 64, "sigma": -1}}),
    Case("per_position_alpha_above_one", "acceptance.alphas.1", "less than or equal to 1",
         set={"acceptance": {"kind": "per_position", "alphas": [0.9, 1.2]}}),
    Case("poisson_rate_infinite", "workload.arrival.rate_per_s", "finite number",
         set={"workload.arrival": {"kind": "poisson", "rate_per_s": float("inf")}}),
    Case("model_dtype_bytes_zero", "models.draft.dtype_bytes", "greater than 0", set={"models.draft.dtype_bytes": 0}),
    Case("cost_per_hour_negative", "devices.gpu.cost_per_hour", "greater than or equal to 0",
         set={"devices.gpu.cost_per_hour": -2}),
    Case("devices_empty", "devices", "at least 1 item", set={"devices": {}}),
    Case("name_not_a_string", "name", "valid string", set={"name": 7}),
]


def _stderr(result) -> str:
    """The captured stderr; older click mixes it into `output` unless asked not to."""
    try:
        return result.stderr
    except ValueError:
        return result.output


def _write(tmp_path: Path, case_files: dict) -> None:
    for rel, content in case_files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            continue  # the file does not exist
        if content is FIFO:
            os.mkfifo(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def _scenario(case: Case) -> str | bytes:
    if case.text is not None:
        return case.text
    data = copy.deepcopy(BASE)
    for path, value in case.set.items():
        setp(data, path, value)
    for path in case.delete:
        delp(data, path)
    return yaml.safe_dump(data, sort_keys=False)


def _invoke(tmp_path: Path, case: Case):
    _write(tmp_path, case.files)
    argv = case.cmd.split()
    if case.name is not None:
        scenario = tmp_path / case.name
        if case.write:
            _write(tmp_path, {case.name: _scenario(case)})
        argv.append(str(scenario))
    argv += [a.replace("{tmp}", str(tmp_path)) for a in case.args]
    for rel, mode in case.chmod.items():
        (tmp_path / rel).chmod(mode)
    out = tmp_path / "out"
    if case.cmd in ("run", "sweep", "plan", "calibrate compare", "calibrate fit") and "--out" not in case.args:
        argv += ["--out", str(out)]
    env = {k: v.replace("{tmp}", str(tmp_path)) for k, v in case.env.items()}
    return CliRunner().invoke(app, argv, env=env, prog_name="specsim"), out


def test_cases_are_distinct():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 300


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_exits_2_with_one_clean_message(tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)  # a relative path in a case must not depend on the test's cwd
    if case.chmod and os.geteuid() == 0:
        pytest.skip("root reads a file of mode 000")
    result, out = _invoke(tmp_path, case)
    stderr, everything = _stderr(result), result.output + _stderr(result)
    assert result.exit_code == 2, (result.exit_code, everything, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in everything
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one message line on stderr, got: {stderr!r}"
    message = lines[0]
    assert message.startswith("error: "), message
    source = case.source or case.name
    assert f"{source}: " in message, (source, message)
    if case.field:
        assert f": {case.field}: " in message, (case.field, message)
    assert case.rule in message, (case.rule, message)
    assert not case.absent or case.absent not in message, message
    assert message.isprintable(), message  # no terminal escapes or bidirectional overrides, raw
    assert not out.exists() or not any(out.iterdir()), sorted(out.iterdir())
    assert not [p for p in tmp_path.glob("*.png") if p.is_file()], "a timeline was left"


VALID = {
    "base": Case("base", "", ""),
    "two_devices_and_link": Case("two_devices_and_link", "", "", set=TWO_DEVICES),
    "profile_folder": Case("profile_folder", "", "", set=ON_PROFILE, files=profile_folder()),
    "traces": Case("traces", "", "", set={"acceptance": {"kind": "trace", "path": "accepted.txt"},
                                          "workload.arrival": {"kind": "trace", "path": "arrivals.csv"}},
                   files={"accepted.txt": "1\n\n4\n0\n", "arrivals.csv": "arrival_s,prompt_tokens\n0.0,8\n\n0.5,12\n"}),
    "json": Case("json", "", "", text='{"models": {"t": {"preset": "llama-68m"}}, '
                 '"devices": {"gpu": {"profile": {"kind": "constant", "forward_ms": {"t": 2}}}}, '
                 '"strategy": {"kind": "autoregressive", "target": {"model": "t", "device": "gpu"}}, '
                 '"workload": {"requests": 2, "output_tokens": 4}}', name="scenario.json"),
}


@pytest.mark.parametrize("case", VALID.values(), ids=VALID.keys())
def test_valid_scenarios_exit_0_and_write_outputs(tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    result, out = _invoke(tmp_path, case)
    assert result.exit_code == 0, (result.output, _stderr(result), result.exception)
    assert "error:" not in result.output
    assert {p.name for p in out.iterdir()} >= {"report.json", "requests.csv", "steps.csv"}
    for cmd in ("validate", "estimate"):
        check = CliRunner().invoke(app, [cmd, str(tmp_path / case.name)])
        assert check.exit_code == 0, (cmd, check.output)


def test_long_message_stays_on_one_line(tmp_path):
    """Rich must not wrap the message at the terminal width: scripts read it as one line."""
    deep = tmp_path / ("a-rather-long-folder-name-" * 4)
    deep.mkdir()
    scenario = deep / "scenario.yaml"
    data = copy.deepcopy(BASE)
    data["models"]["draft"]["preset"] = "x" * 120
    scenario.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, ["validate", str(scenario)])
    assert result.exit_code == 2
    lines = [ln for ln in _stderr(result).splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {scenario}: models.draft.preset: unknown preset"), lines


def test_out_that_is_a_file_is_refused_before_running(tmp_path):
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(BASE))
    out = tmp_path / "out"
    out.write_text("keep me")
    result = CliRunner().invoke(app, ["run", str(scenario), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"error: {out}: --out must be a folder" in _stderr(result)
    assert out.read_text() == "keep me"


@pytest.mark.parametrize("cmd", ["run", "estimate"])
def test_a_zero_time_what_if_runs_and_reports_no_rate(tmp_path, cmd):
    """Free forward passes (forward_ms 0, a what-if) run; what no time can define comes back as null
    with a warning, never as a crash or as Infinity/NaN in the JSON."""
    data = copy.deepcopy(BASE)
    data["devices"]["gpu"]["profile"] = {"kind": "constant", "forward_ms": {"draft": 0.0, "target": 0.0}}
    path = tmp_path / "zero.yaml"
    path.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, [cmd, str(path), "--json"])
    assert result.exit_code == 0, result.output

    def refuse(constant):
        raise AssertionError(f"{constant} in the JSON")

    report = json.loads(result.stdout, parse_constant=refuse)
    assert report["throughput_tokens_per_s"] is None
    if cmd == "run":
        assert any("no simulated time" in w for w in report["warnings"])
