"""The simulator's tensor-parallel forward against a measured group: what tools/tp_campaign.py wrote.

  python tools/tp_check.py OUT [--quick]

For each OUT/group/<preset>.csv (the TP-2 group's measured forward), the simulator's prediction at
the same points from what a single-GPU profile holds, OUT/share/<preset>.tp2.csv (one GPU's share,
the same session), plus the all-reduces costed from the measured table OUT/allreduce.yaml
(simulator/tensor_parallel.py: 2 a block and half a one for the logits), never from the group's
own grid. Prints the median, p90 and largest relative error over the points, and their sign.

For each pair OUT/stages/<preset>.stage0.csv and .stage1.csv (each GPU's pipeline stage timed
alone), the simulator's split of one model by layers (profiles.stage_share: a stage takes the
whole model's time x its layers / all layers, embedding and LM head scaled with the blocks) set
beside them, the whole model's time taken as the two stages' sum: how far the first stage (the
embedding) and the last (the LM head) are from an even split.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import yaml
from tp_campaign import QUICK_ARCH
from tp_shares import read

from simulator import catalog
from simulator.tensor_parallel import AllReduceTable, Interconnect, communication_s


def main() -> None:
    out = Path(sys.argv[1])
    quick = "--quick" in sys.argv
    net = Interconnect(allreduce=AllReduceTable(**yaml.safe_load((out / "allreduce.yaml").read_text())))
    for group_csv in sorted((out / "group").glob("*.csv")):
        name = group_csv.stem
        arch = catalog.Architecture(**QUICK_ARCH, dtype_bytes=4) if quick else catalog.PRESETS[name]
        group, share = read(group_csv), read(out / "share" / f"{name}.tp2.csv")
        keys = [k for k in group if k in share]
        err = np.array([(share[k] + 1000 * communication_s(arch, 2, net, k[0] * k[1])) / group[k] - 1 for k in keys])
        print(f"{name}: predicted / measured - 1 over {len(keys)} points: median |error| {np.median(abs(err)):.1%}, "
              f"p90 {np.percentile(abs(err), 90):.1%}, max {abs(err).max():.1%}, mean signed {err.mean():+.1%}")
    for first in sorted((out / "stages").glob("*.stage0.csv")):
        name = first.name.removesuffix(".stage0.csv")
        arch = catalog.Architecture(**QUICK_ARCH, dtype_bytes=4) if quick else catalog.PRESETS[name]
        stages = [read(first), read(first.with_name(f"{name}.stage1.csv"))]
        keys = [k for k in stages[0] if k in stages[1]]
        layers = catalog.split_layers(arch.layers, 2)
        for s, measured in enumerate(stages):
            err = np.array([(stages[0][k] + stages[1][k]) * layers[s] / arch.layers / measured[k] - 1 for k in keys])
            print(f"{name} stage {s} ({layers[s]} of {arch.layers} layers): even split / measured - 1 over {len(keys)} "
                  f"points: median |error| {np.median(abs(err)):.1%}, p90 {np.percentile(abs(err), 90):.1%}, "
                  f"mean signed {err.mean():+.1%}")


if __name__ == "__main__":
    main()
