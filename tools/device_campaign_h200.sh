#!/usr/bin/env bash
# One call on the lent H200 for what the shipped measurements still lack, each part under its own
# time limit and packed as soon as it ends (a part cut short still comes back):
#   tools/device_campaign_h200.sh OUT [PART...]      PART: serving hf runs-c eager grid noise hf-b hf-probe hf-c hf-d hf-e hf-noise hf-f hf-g hf-h hf-i hf-j tp-check tp-grid tp-grid2 tp-grid3 tp-grid4a tp-grid4b (default: the first three)
# OUT/serving.tgz    continuous batching streams (tools/device_campaign.py h200-serving), ~150 s
# OUT/hf.tgz         Hugging Face transformers: profile and assisted generation (h200-hf), ~200 s
# OUT/runs-c.tgz     batch-1 runs, session c, repeats drawing alike (h200-runs-c), ~110 s
# OUT/eager.tgz      eager batch-1 profile beside the graph one (h200-eager), ~60 s
# OUT/grid.tgz       graph-mode grid of tinyllama-1.1b (h200-grid), ~150 s
# OUT/noise.tgz      the host's CPU steal and eager/graph forwards over 20 s (h200-noise), ~40 s
# OUT/hf-probe.tgz  Hugging Face's spread: allocator kept or emptied between runs (h200-hf-probe), ~100 s
# OUT/hf-c.tgz      Hugging Face runs, each from an emptied allocator (h200-hf-c), ~200 s
# OUT/hf-b.tgz       Hugging Face, a second session: profile and runs together (h200-hf-b), ~300 s
# OUT/hf-d.tgz       Hugging Face runs and profile interleaved in one session, and why the profile differs (h200-hf-d), ~400 s
# OUT/hf-e.tgz       the same with the process pinned to its fastest CPU (h200-hf-e), ~420 s
# OUT/hf-f.tgz       session d's protocol with 9 timed rounds (h200-hf-f), ~560 s
# OUT/hf-g.tgz       session d's protocol with a host probe around every run (h200-hf-g), ~500 s, and hf-h again (h200-hf-h)
# OUT/hf-i.tgz       session d's protocol with 8 rounds (h200-hf-i), ~450 s, and hf-j again (h200-hf-j)
# OUT/hf-noise.tgz   the host or the engine: Python loop, own and HF forwards, interleaved (h200-hf-noise), ~130 s
# OUT/tp-check.tgz  llama2-7b/13b whole and their 2- and 4-way shards on a small grid (h200-tp-check), ~150 s
# OUT/tp-grid.tgz   one GPU's share of llama2-7b and llama2-13b split 2 ways, the full grid (h200-tp-grid), ~400 s
# OUT/tp-grid2.tgz  the same split 4 ways, and llama2-70b split 4 and 8 ways (h200-tp-grid2), ~450 s
# OUT/tp-grid3.tgz  llama2-70b split 4 ways alone (h200-tp-grid3), ~310 s
# OUT/tp-grid4a.tgz llama2-70b split 2 ways at batches 1, 2, 4 (h200-tp-grid4), and tp-grid4b at 8, 16, 32
# a device command has 10 minutes: name parts that fit
set -uo pipefail
out=${1:?usage: tools/device_campaign_h200.sh OUT [PART...]}
shift
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(serving hf runs-c)
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
work=$(mktemp -d)
declare -A limit=([serving]=150 [hf]=200 [runs-c]=115 [eager]=60 [noise]=45 [hf-b]=290 [hf-probe]=110 [hf-c]=200 [grid]=150 [hf-d]=540 [hf-e]=540 [hf-noise]=170 [hf-f]=585 [hf-g]=585 [hf-h]=585 [hf-i]=585 [hf-j]=585 [tp-check]=170 [tp-grid]=410 [tp-grid2]=570 [tp-grid3]=580 [tp-grid4a]=560 [tp-grid4b]=560)
declare -A mode=([serving]=h200-serving [hf]=h200-hf [runs-c]=h200-runs-c [eager]=h200-eager [grid]=h200-grid [noise]=h200-noise [hf-b]=h200-hf-b [hf-probe]=h200-hf-probe [hf-c]=h200-hf-c [hf-d]=h200-hf-d [hf-e]=h200-hf-e [hf-noise]=h200-hf-noise [hf-f]=h200-hf-f [hf-g]=h200-hf-g [hf-h]=h200-hf-h [hf-i]=h200-hf-i [hf-j]=h200-hf-j [tp-check]=h200-tp-check [tp-grid]=h200-tp-grid [tp-grid2]=h200-tp-grid2 [tp-grid3]=h200-tp-grid3 [tp-grid4a]=h200-tp-grid4 [tp-grid4b]=h200-tp-grid4)
for name in "${parts[@]}"; do
  mkdir -p "$work/$name"
  extra=()
  [ "$name" = grid ] && extra=(tinyllama-1.1b)
  [ "$name" = tp-grid4a ] && extra=(1,2,4)
  [ "$name" = tp-grid4b ] && extra=(8,16,32)
  timeout "${limit[$name]}" python3 tools/device_campaign.py "${mode[$name]}" "$work/$name" "${extra[@]}" 2>&1 \
    | grep -v Warning | tail -25 | tee "$out/$name.log"
  tar czf "$out/$name.tgz" -C "$work/$name" .
done
