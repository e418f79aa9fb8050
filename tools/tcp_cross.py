"""Overheads fitted on one TCP session, predicting another session's runs (a new host, new processes).

  SPECSIM_PROFILE_PATH=A:B python tools/tcp_cross.py A/runs-tcp.jsonl PROFILE_A B/runs-tcp.jsonl PROFILE_B

Fits the overheads (message_ms with the compute ones) on session A's runs over a link
(`calibrate fit --train-every 2`'s training split), puts them on session B's profile and predicts
every one of B's runs over a link with them; prints B's errors before (its profile as measured)
and after, per run and per configuration, beside B's repeat spread.
"""

from __future__ import annotations

import sys
from pathlib import Path

from simulator.calibration import compare
from simulator.calibration.report import summary_line as line
from simulator.calibration.fit import fit
from simulator.profiles import Overheads


def main() -> None:
    a_path, a_profile, b_path, b_profile = sys.argv[1:5]
    over_link = lambda path: [r for r in compare.load_runs([Path(path)]) if r.link is not None]  # noqa: E731
    fitted = fit(over_link(a_path), a_profile, every=2).overheads
    print(f"fitted on {a_profile}: {fitted.model_dump(exclude={'fitted'})}")
    runs = over_link(b_path)
    before = [compare.predict(r, {b_profile: Overheads()}) for r in runs]
    after = [compare.predict(r, {b_profile: fitted}) for r in runs]
    print(f"{b_profile} as measured: {line(before)}")
    print(f"{b_profile} with {a_profile}'s overheads: {line(after)}")


if __name__ == "__main__":
    main()
