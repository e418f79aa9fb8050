#!/usr/bin/env bash
# One call on the lent H200 for what the shipped measurements still lack, each part under its own
# time limit and packed as soon as it ends (a part cut short still comes back):
#   tools/device_campaign_h200.sh OUT
# OUT/serving.tgz    continuous batching streams (tools/device_campaign.py h200-serving)
# OUT/hf.tgz         Hugging Face transformers: profile and assisted generation (h200-hf)
# OUT/eager.tgz      eager batch-1 profile beside the graph one (h200-eager)
# OUT/grid.tgz       graph-mode grid of tinyllama-1.1b (h200-grid)
# about 8 minutes in all, inside one device command's 10
set -uo pipefail
out=${1:?usage: tools/device_campaign_h200.sh OUT}
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
work=$(mktemp -d)
part() {  # name seconds mode
  local name=$1 limit=$2; shift 2
  mkdir -p "$work/$name"
  timeout "$limit" python3 tools/device_campaign.py "$1" "$work/$name" 2>&1 | grep -v Warning | tail -5 | tee "$out/$name.log"
  tar czf "$out/$name.tgz" -C "$work/$name" .
}
part_grid() {
  mkdir -p "$work/grid"
  timeout 90 python3 tools/device_campaign.py h200-grid "$work/grid" tinyllama-1.1b 2>&1 | tail -2 | tee "$out/grid.log"
  tar czf "$out/grid.tgz" -C "$work/grid" .
}
part serving 170 h200-serving
part hf 170 h200-hf
part eager 60 h200-eager
part_grid
