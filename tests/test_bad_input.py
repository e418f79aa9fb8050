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
    cmd: str = "run"
    source: str | None = None  # the file the message names; default the scenario's name


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
    Case("acceptance_trace_not_an_integer", "line 4", "accepted count must be an integer, got 'many'",
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
        if isinstance(content, bytes):
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
    argv = [case.cmd]
    if case.name is not None:
        scenario = tmp_path / case.name
        if case.write:
            _write(tmp_path, {case.name: _scenario(case)})
        argv.append(str(scenario))
    argv += list(case.args)
    out = tmp_path / "out"
    if case.cmd == "run":
        argv += ["--out", str(out)]
    return CliRunner().invoke(app, argv), out


def test_cases_are_distinct():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_exits_2_with_one_clean_message(tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)  # a relative path in a case must not depend on the test's cwd
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
    assert not out.exists() or not any(out.iterdir()), sorted(out.iterdir())


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
