#!/usr/bin/env bash
# Regenerates calibration/results/ (the figures in docs/calibration.md) from the shipped
# measurement files and profiles. Fits overheads into the shipped profiles as it goes (--write).
set -euo pipefail
cd "$(dirname "$0")/.."
m=calibration/measurements
r=calibration/results
# H200, forward passes replayed from CUDA graphs: session a before any fit, the fit on session a,
# session b (other seeds, minutes later) held out, and static batches of 1-32 sequences
specsim calibrate compare $m/runs-h200-graph-a.jsonl --raw --out $r/h200-graph-a-before
specsim calibrate fit $m/runs-h200-graph-a.jsonl --profile h200-torch-graph-bf16 --write --out $r/h200-graph-a-fit
specsim calibrate compare $m/runs-h200-graph-b.jsonl --raw --out $r/h200-graph-b-before
specsim calibrate compare $m/runs-h200-graph-b.jsonl --out $r/h200-graph-b-after
specsim calibrate compare $m/runs-h200-graph-batch.jsonl --out $r/h200-graph-batch
# session c (2026-12-02, a configuration's repeats drawing alike): held out of the fit on session a
specsim calibrate compare $m/runs-h200-graph-c.jsonl --out $r/h200-graph-c-after
# continuous batching on the H200 (serving.py): the graph profile with the batch-1 loop's overheads,
# then the serving loop's step overhead fitted on a third of the configurations (the rest held out)
specsim calibrate compare $m/runs-h200-serving.jsonl --out $r/h200-serving-before
specsim calibrate fit $m/runs-h200-serving.jsonl --profile h200-torch-graph-serving-bf16 --write --out $r/h200-serving-fit
# Hugging Face assisted generation on the H200, eager: session a (profile and runs, cuDNN attention
# on in the runs), session b (profile and runs together), session c (runs from an emptied allocator)
specsim calibrate compare $m/runs-h200-hf.jsonl --out $r/h200-hf-a
specsim calibrate compare $m/runs-h200-hf-b.jsonl --out $r/h200-hf-b
specsim calibrate compare $m/runs-h200-hf-c.jsonl --profile h200-hf-b-bf16 --out $r/h200-hf-c
# sessions d, e and f (2026-12-02): each session's profile measured interleaved with its runs
# (hf_session.py; e with the process pinned to one CPU, f with 6 timed rounds); before any fit, then the fit on the
# autoregressive runs and a third of the speculative configurations, the rest held out
for s in d e f; do
  specsim calibrate compare $m/runs-h200-hf-$s.jsonl --raw --out $r/h200-hf-$s-before
  specsim calibrate fit $m/runs-h200-hf-$s.jsonl --profile h200-hf-$s-bf16 --train-every 3 --write --out $r/h200-hf-$s-fit
done
# sessions g and h: session d's protocol with a host probe around every run; fitted with every run scaled to
# its profile's host speed (--host-speed), each on its own; then g's fit checked on h's runs and the reverse
for s in g h; do
  specsim calibrate compare $m/runs-h200-hf-$s.jsonl --raw --out $r/h200-hf-$s-before
  specsim calibrate compare $m/runs-h200-hf-$s.jsonl --raw --host-speed --out $r/h200-hf-$s-host-before
  specsim calibrate fit $m/runs-h200-hf-$s.jsonl --profile h200-hf-$s-bf16 --train-every 3 --host-speed --write \
    --out $r/h200-hf-$s-fit
done
specsim calibrate compare $m/runs-h200-hf-h.jsonl --profile h200-hf-g-bf16 --host-speed --out $r/h200-hf-h-on-g
specsim calibrate compare $m/runs-h200-hf-h.jsonl --profile h200-hf-g-bf16 --out $r/h200-hf-h-on-g-unscaled
specsim calibrate compare $m/runs-h200-hf-g.jsonl --profile h200-hf-h-bf16 --host-speed --out $r/h200-hf-g-on-h
# sessions i and j: session d's protocol over 8 rounds, no probes: before any fit and the fit; then i's runs on g's profile
for s in i j; do
  specsim calibrate compare $m/runs-h200-hf-$s.jsonl --raw --out $r/h200-hf-$s-before
  specsim calibrate fit $m/runs-h200-hf-$s.jsonl --profile h200-hf-$s-bf16 --train-every 3 --write --out $r/h200-hf-$s-fit
done
specsim calibrate compare $m/runs-h200-hf-i.jsonl --profile h200-hf-g-bf16 --out $r/h200-hf-i-on-g
# H100 (eager), first session: before any fit, then the fit (training split of session A; its held-out half reported)
specsim calibrate compare $m/runs-h100.jsonl --raw --out $r/h100-a-before
specsim calibrate fit $m/runs-h100.jsonl --profile h100-sxm-torch-bf16 --write --out $r/h100-a-fit
# H100, second session (other seeds, minutes later): a held-out check of the fitted profile, and before it
specsim calibrate compare $m/runs-h100-b.jsonl --raw --out $r/h100-b-before
specsim calibrate compare $m/runs-h100-b.jsonl --out $r/h100-b-after
# Draft on the host CPU (2 and 8 threads), target on the H100: before any fit, the draft side fitted
# per host profile (the hand-over per step; the H100's own overheads kept), and after
specsim calibrate compare $m/runs-edge.jsonl --raw --out $r/edge-before
specsim calibrate fit $m/runs-edge.jsonl --profile h100-sxm-torch-bf16 --draft-profile cpu-host2-torch-fp32 --write --out $r/edge-fit-host2
specsim calibrate fit $m/runs-edge.jsonl --profile h100-sxm-torch-bf16 --draft-profile cpu-host8-torch-fp32 --write --out $r/edge-fit-host8
specsim calibrate compare $m/runs-edge.jsonl --out $r/edge-after
# Static batches of 1-32 sequences on the H100, predicted by the batched strategy
specsim calibrate compare $m/runs-h100-batch.jsonl --out $r/h100-batch
# This project's 2-core CPU
specsim calibrate fit $m/runs-cpu2.jsonl --profile cpu-2core-torch-fp32 --write --out $r/cpu2-fit
specsim calibrate compare $m/runs-cpu2.jsonl --out $r/cpu2-after
# This project's 2-core CPU on 2026-12-01 (an Intel Xeon machine), measured with the round-robin protocol
specsim calibrate fit $m/runs-cpu2-xeon.jsonl --profile cpu-2core-xeon-torch-fp32 --write --out $r/cpu2-xeon-fit
specsim calibrate compare $m/runs-cpu2-xeon.jsonl --out $r/cpu2-xeon-after
# the same machine, a second session (2026-12-02): 3 passes of 6 samples a point, 5 rounds of runs
specsim calibrate fit $m/runs-cpu2-xeon-b.jsonl --profile cpu-2core-xeon-b-torch-fp32 --write --out $r/cpu2-xeon-b-fit
specsim calibrate compare $m/runs-cpu2-xeon-b.jsonl --out $r/cpu2-xeon-b-after
# the 2-core CPU on 2026-12-02 (an AMD EPYC machine), two sessions with a host probe around every run (cpu-probe):
# the fit without the probes, then with every run scaled by its probe (--host-speed), each held-out half reported
for s in b c; do
  specsim calibrate fit $m/runs-cpu2-epyc-$s.jsonl --profile cpu-2core-epyc-$s-torch-fp32 --out $r/cpu2-epyc-$s-fit-unscaled
  specsim calibrate fit $m/runs-cpu2-epyc-$s.jsonl --profile cpu-2core-epyc-$s-torch-fp32 --host-speed --write \
    --out $r/cpu2-epyc-$s-fit
done
