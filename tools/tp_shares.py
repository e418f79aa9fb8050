"""How one GPU's share of a tensor-parallel model compares with the whole model, from measured grids.

    python tools/tp_shares.py [PROFILE_FOLDER]   (default: calibration/results/h200-tp-check)

For each <preset>.tp<N>.csv beside <preset>.csv: the share's time over the whole model's / N
(1 would be a perfect split), and how well the share of the nearest other degree predicts it
(tensor_parallel.from_other_degree, as the simulator derives a share it has not measured), as the
median, p90 and largest relative error over the points both grids have. A preset measured only in
shares (llama2-70b) is set degree against degree.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from simulator.tensor_parallel import from_other_degree


def read(path: Path) -> dict:
    with path.open() as f:
        return {(int(r["batch"]), int(r["query_tokens"]), int(r["context_tokens"])): float(r["latency_ms_p50"])
                for r in csv.DictReader(f)}


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "calibration/results/h200-tp-check")
    for whole_csv in sorted(folder.glob("*.csv")):
        if ".tp" in whole_csv.stem:
            continue
        whole = read(whole_csv)
        shares = {int(p.stem.rpartition(".tp")[2]): read(p) for p in folder.glob(f"{whole_csv.stem}.tp*.csv")}
        for n, share in sorted(shares.items()):
            keys = [k for k in share if k in whole]
            ratio = np.array([share[k] / (whole[k] / n) for k in keys])
            line = (f"{whole_csv.stem} {n}-way: share / (whole / {n}) median {np.median(ratio):.3f}, "
                    f"range {ratio.min():.3f}-{ratio.max():.3f} over {len(keys)} points")
            others = [m for m in shares if m != n]
            if others:
                m = min(others, key=lambda d: abs(np.log(d / n)))
                err = []
                for k in keys:
                    if k in shares[m]:
                        f = from_other_degree(lambda *_: np.array([whole[k]]), lambda *_: np.array([shares[m][k]]), m, n)
                        err.append(abs(f(*k[:2], np.array([k[2]]))[0] / share[k] - 1))
                line += (f"; from the {m}-way share: median {np.median(err):.1%}, p90 {np.percentile(err, 90):.1%}, "
                         f"max {max(err):.1%}")
            print(line)
    # presets whose whole model was not measured (llama2-70b does not fit one GPU): degree against degree
    wholes = {p.stem for p in folder.glob("*.csv") if ".tp" not in p.stem}
    alone: dict[str, dict[int, dict]] = {}
    for p in sorted(folder.glob("*.tp*.csv")):
        preset, _, n = p.stem.rpartition(".tp")
        if preset not in wholes:
            alone.setdefault(preset, {})[int(n)] = read(p)
    for preset, shares in alone.items():
        degrees = sorted(shares)
        for m, n in zip(degrees, degrees[1:]):
            keys = [k for k in shares[n] if k in shares[m]]
            ratio = np.array([shares[n][k] / (shares[m][k] * m / n) for k in keys])
            print(f"{preset} {n}-way against {m}-way: share / ({m}-way share x {m}/{n}) median {np.median(ratio):.3f}, "
                  f"range {ratio.min():.3f}-{ratio.max():.3f} over {len(keys)} points")


if __name__ == "__main__":
    main()
