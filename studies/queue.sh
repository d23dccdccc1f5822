#!/usr/bin/env bash
# The issue-18 jobs still to run, in two one-thread lanes side by side (2 cores). Every command skips what is
# finished (results.yaml per (row, seed), cached images per row), so re-running this after a stop, or on a fresh
# clone, continues the study. Lane A trains each row's seed 0 and then its interaction curves (the checkpoint is
# only on this machine, so both happen in one session); lane B trains seeds 1 and 2.
#   nohup bash studies/queue.sh >/dev/null 2>&1 &      progress: tail studies/lane_*.log
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
CFG=experiments/configs/ablation_converged.yaml
OUT=studies/ablation_converged
ROWS="full no_gating no_ca plain gate_sigmoid dilations_1-1-1 split_1-0-0 no_fd"
run() { .venv/bin/python experiments/ablate.py --config $CFG --out $OUT --no-report "$@"; }
laneA() { for r in $ROWS; do run --rows "$r" --seeds 0 || echo "failed: $r seed 0"; done; echo "lane A done"; }
laneB() { for r in $ROWS; do for s in 1 2; do run --rows "$r" --seeds $s || echo "failed: $r seed $s"; done; done
          echo "lane B done"; }
laneA > studies/lane_A.log 2>&1 &
laneB > studies/lane_B.log 2>&1 &
wait
