#!/usr/bin/env bash
# The issue-18 jobs still to run, in two one-thread lanes side by side (2 cores):
#   DEADLINE=13:50 nohup bash studies/queue.sh >/dev/null 2>&1 &      progress: tail studies/lane_*.log
# (LANES="A" runs one lane; a second queue started later takes only units nobody holds)
# A unit is one (row, seed) of the 28 px grid, or one model of the 3-epoch 28 px comparison (compare28_3ep: the
# resolution check's 28 px side, the grid's budget; its MogaNet-XT is the grid's full row, seed 0). A row's seed-0
# unit also computes the row's interaction curves, and a comparison unit its curves and Grad-CAM; both need the
# checkpoint, and checkpoints are not in git: so a unit must finish in the session that starts it. Each lane
# takes the first unit that is not finished, not taken by the other lane, and fits before DEADLINE (UTC, the
# session's end minus a margin; estimates from PLAN.md: ~45 min for a training, ~70 min with the curves), and stops
# when none fits. Every command skips what is finished, so this continues the study on a fresh clone.
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
CFG=experiments/configs/ablation_converged.yaml
OUT=studies/ablation_converged
CLAIMS=$OUT/.claims
ROWS="full no_gating no_ca plain gate_sigmoid dilations_1-1-1 split_1-0-0 no_fd"
CMP=studies/compare28_3ep
CMP_ARGS="--epochs 3 --batch-size 128 --drop-path 0 --lr convnext_atto=0.008 moganet_xtiny=0.004 swin_femto=0.001
  --num-images 32 --grid 7 --pairs 20 --contexts 50 --target-ci 0.1 --target-over images --gradcam-images 8
  --out $CMP --no-tracking"
UNITS="$(for r in $ROWS; do for s in 0 1 2; do echo "$r:$s"; done; done) cmp:convnext_atto cmp:swin_femto"
TRAIN_MIN=${TRAIN_MIN:-45}
CURVES_MIN=${CURVES_MIN:-25}
deadline=$(date -u -d "${DEADLINE:-23:59}" +%s)
mkdir -p "$CLAIMS"

finished() {  # row seed, or cmp model
  [ "$1" = cmp ] && { [ -f "$CMP/$2/analysis.pt" ]; return; }
  [ -f "$OUT/$1/seed$2/results.yaml" ] || return 1
  [ "$2" != 0 ] || [ "$(.venv/bin/python -c "import pandas as pd, sys; d = pd.read_csv(sys.argv[1]); print(d.image_id.nunique())" \
                        "$OUT/$1/interaction.csv" 2>/dev/null)" = 32 ]
}

claim() {  # atomic (mkdir): the other lane cannot take the same unit; a claim whose process has gone is stale
  local d=$CLAIMS/$1 p
  if ! mkdir "$d" 2>/dev/null; then
    p=$(cat "$d/pid" 2>/dev/null)
    { [ -n "$p" ] && kill -0 "$p" 2>/dev/null; } && return 1
    rm -rf "$d"; mkdir "$d" 2>/dev/null || return 1
  fi
  echo $BASHPID > "$d/pid"
}

lane() {
  while true; do
    picked=
    for unit in $UNITS; do
      r=${unit%%:*}; s=${unit#*:}
      finished "$r" "$s" && continue
      need=$TRAIN_MIN; [ "$s" != 1 ] && [ "$s" != 2 ] && need=$((TRAIN_MIN + CURVES_MIN))
      [ $(( $(date -u +%s) + need * 60 )) -le "$deadline" ] || continue
      claim "$r-$s" || continue
      picked="$r $s"; break
    done
    [ -n "$picked" ] || { echo "lane $1: nothing left that fits before ${DEADLINE:-23:59} UTC"; return; }
    set -- "$1" $picked
    echo "lane $1: $2 $3 at $(date -u +%H:%M)"
    if [ "$2" = cmp ]; then
      .venv/bin/python analysis/compare_models.py $CMP_ARGS --only "$3" || echo "failed: $2 $3"
    else
      .venv/bin/python experiments/ablate.py --config $CFG --out $OUT --no-report --rows "$2" --seeds "$3" \
        || echo "failed: $2 seed $3"
    fi
    set -- "$1"
  done
}
for name in ${LANES:-A B}; do lane "$name" >> "studies/lane_$name.log" 2>&1 & done
wait
