"""File formats shared by the code that writes them and the code that reads them, and the
reading every input file goes through (size, kind, encoding, duplicate keys, long integers)."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import yaml

# hardware_profiles/<name>/<model>.csv
PROFILE_CSV_COLUMNS = ("batch", "query_tokens", "context_tokens", "latency_ms_p50", "latency_ms_p10",
                       "latency_ms_p90", "samples")

# jobs.csv of `specsim run --out` when jobs were recorded (--timeline, --report): one row per job on a
# device or link direction, in the order they were logged (server.Server.log)
JOB_CSV_COLUMNS = ("server", "start_s", "end_s", "label")

# the scenario as it ran (after --set; a plan's with the SLO it planned for), in every output folder
SCENARIO_FILE = "scenario.yaml"

# ---------------------------------------------------------------- reading input files

# The most an input file (scenario, profile.yaml, profile CSV, trace, measurement file) may hold, in
# bytes: 64 MiB. A file is read whole; a larger one is refused before it is read, and a device or a
# FIFO (never a regular file) is refused before it is opened, so nothing waits on it or fills memory.
MAX_FILE_BYTES = 64 * 2**20
# Python's own limit on the digits of an integer read from text (sys.get_int_max_str_digits()).
MAX_INT_DIGITS = sys.get_int_max_str_digits() or 4300


class FormatError(ValueError):
    """A rule a file's text breaks, where it breaks it: `field` (a key, or `line N`) and `rule`."""

    def __init__(self, field: str, rule: str):
        self.field, self.rule = field, rule
        super().__init__(f"{field}: {rule}" if field else rule)


def read_input(path, what: str = "file") -> str:
    """The text of an input file: a regular file of at most MAX_FILE_BYTES, in UTF-8.
    Raises InputError naming the file; never blocks on a FIFO or reads a device."""
    from .errors import InputError

    path = Path(path)
    try:
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise InputError(path, "", f"not a regular file (a {what} is read whole; a device, FIFO "
                                 "or folder cannot be)")
            if info.st_size > MAX_FILE_BYTES:
                raise InputError(path, "", f"larger than {MAX_FILE_BYTES // 2**20} MiB, the limit for a {what}")
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InputError(path, "", f"cannot read {what} ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise InputError(path, "", f"larger than {MAX_FILE_BYTES // 2**20} MiB, the limit for a {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(path, "", "not UTF-8 text") from None


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a key given twice in one mapping (the safe loader keeps the
    last), and reports an integer of more than MAX_INT_DIGITS digits or an impossible date
    (2024-13-45) as a FormatError instead of Python's ValueError."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise FormatError(str(key), f"duplicate key on line {line} (first on line {seen[key]}): "
                                          "each key may appear once")
                    seen[key] = line
                except TypeError:
                    continue  # an unhashable key: the safe loader refuses it itself
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node):
        digits = sum(ch.isdigit() for ch in node.value)
        if digits > MAX_INT_DIGITS:
            raise FormatError(f"line {node.start_mark.line + 1}", f"an integer of {digits} digits: "
                              f"at most {MAX_INT_DIGITS}")
        return super().construct_yaml_int(node)

    def construct_yaml_timestamp(self, node):
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as exc:
            raise FormatError(f"line {node.start_mark.line + 1}", f"{node.value!r} is not a valid date "
                              f"({exc}; quote it to keep it as text)") from None


StrictLoader.add_constructor("tag:yaml.org,2002:int", StrictLoader.construct_yaml_int)
StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", StrictLoader.construct_yaml_timestamp)


def load_yaml(text: str):
    """YAML data as the safe loader reads it, with StrictLoader's rules (FormatError)."""
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 (a SafeLoader subclass)


def _json_pairs(pairs: list) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise FormatError(key, "duplicate key: each key may appear once")
        out[key] = value
    return out


def _json_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise FormatError("", f"an integer of {digits} digits: at most {MAX_INT_DIGITS}")
    return int(text)


def load_json(text: str):
    """JSON data (json.loads) refusing duplicate keys and over-long integers (FormatError)."""
    return json.loads(text, object_pairs_hook=_json_pairs, parse_int=_json_int)
