#!/usr/bin/env bash
# Draws the timeline figures of docs/strategies.md from the example scenarios (simulated runs).
set -euo pipefail
cd "$(dirname "$0")/.."
f=docs/figures
fig() {  # SCENARIO SPAN_MS (0: the first 60 jobs) [ARGS...]
  local span=(); [ "$2" = 0 ] || span=(--timeline-ms "$2")
  specsim run "scenarios/$1.yaml" --timeline "$f/timeline-$1.png" "${span[@]}" "${@:3}" > /dev/null; echo "$f/timeline-$1.png"; }
fig autoregressive-baseline 60
fig colocated-h100 60
fig edge-draft-cloud-verify 300
fig pearl-edge-overlap 120
fig edge-fleet-shared-verifier 200
fig federated-verification 300
fig tree-h100 60
fig staged-h100 60
fig self-speculative-h100 60
fig parallel-draft-h100 60
fig medusa-h100 60
fig tensor-parallel-h200 40
fig serving-tree-h200 0
fig dynamic-tree-rtx3090 120
fig lossy-shared-uplink 400
fig pipeinfer-q4-70b-jetson 3000
for extra in pipeline-jetson-gige pipeinfer-jetson-gige flowspec-tree-jetson; do
  if [ -f "scenarios/$extra.yaml" ]; then fig "$extra" 800; fi
done
exit 0
