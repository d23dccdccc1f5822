#!/usr/bin/env bash
# The issue-18 jobs still to run, in two one-thread lanes side by side (2 cores):
#   DEADLINE=13:50 nohup bash studies/queue.sh >/dev/null 2>&1 &      progress: tail studies/lane_*.log
# (LANES="A" runs one lane; a second queue started later takes only units nobody holds)
#   DEADLINE=13:50 LANES=A THREADS=2 nohup bash studies/queue.sh >/dev/null 2>&1 &    one lane at two threads
#   bash studies/queue.sh --status      every unit: done, running (which lane's pid) or waiting, with its progress
#   bash studies/pause.sh stop; bash studies/queue.sh --carry      at a session's end: pack unfinished units (below)
# The 56 px units (the resolution check: ablation_56px.yaml's four rows, seed 0, and the 3-epoch comparison at 56 px)
# cost ~4x a 28 px unit. In the one-lane, two-thread mode one fits a session; in two one-thread lanes one takes
# ~2x as long (more than a session) but the two lanes together train ~5-20 % more images/s (AMD EPYC, 56 px: 2 x 24
# vs 40-46 images/s, benchmarks/study_speed.py): set DEADLINE past the session's end for that only on a machine that
# persists between sessions, where an unfinished unit resumes from its last.ckpt (PLAN.md).
# A unit is one (row, seed) of the 28 px grid, or one model of the 3-epoch 28 px comparison (compare28_3ep: the
# resolution check's 28 px side, the grid's budget; its MogaNet-XT is the grid's full row, seed 0). A row's seed-0
# unit also computes the row's interaction curves, and a comparison unit its curves and Grad-CAM; both need the
# checkpoint, and checkpoints are not in git: so on a fresh machine a unit must finish in the session that starts
# it. Each lane takes the first unit that is not finished, not taken by the other lane, and fits before DEADLINE
# (UTC, the session's end minus a margin; estimates below), and stops when none fits. Every command skips what is
# finished, so this continues the study on a fresh clone.
cd "$(dirname "$0")/.."
CFG=experiments/configs/ablation_converged.yaml
OUT=studies/ablation_converged
CLAIMS=$OUT/.claims
ROWS="full no_gating no_ca plain gate_sigmoid dilations_1-1-1 split_1-0-0 no_fd"
CMP=studies/compare28_3ep
CMP_ARGS="--epochs 3 --batch-size 128 --drop-path 0 --lr convnext_atto=0.008 moganet_xtiny=0.004 swin_femto=0.001
  --num-images 32 --grid 7 --pairs 20 --contexts 50 --target-ci 0.1 --target-over images --gradcam-images 8
  --out $CMP --no-tracking"
CFG56=experiments/configs/ablation_56px.yaml
OUT56=studies/ablation_56px
CMP56=studies/compare56_3ep
CMP56_ARGS="${CMP_ARGS/--out $CMP/--out $CMP56} --image-size 56"
# the 56 px grid's full row is also the 56 px comparison's MogaNet-XT (same configuration, images and design), so
# g56:full is followed by c56:moganet_xtiny, which shares it (share_xt) and adds its Grad-CAM while the checkpoint
# is here. Last, cs:<model>:<seed>: the 28 px comparison's models on training seeds 1 and 2 (compare_models.py
# --train-seeds; curves on the same images and design, no Grad-CAM), so that MogaNet against each baseline is
# tested across training seeds; MogaNet-XT's are the grid's full row on those seeds (share_xt_seed). After them,
# g56s:<row>:<seed>: the 56 px key rows on training seeds 1 and 2, each trained and its curves computed on its own
# checkpoint (ablate.py --curve-seeds): the 56 px seed-0 verdicts can reverse from one seed to the next as the 28 px
# ones do, so whether a conclusion changes with resolution needs the seed spread at 56 px too. Gating first (full
# and no_gating on seed 1, then on seed 2), then no_ca and plain: ~3.5 h each as one of two one-thread lanes.
UNITS="$(for r in $ROWS; do for s in 0 1 2; do echo "$r:$s"; done; done) cmp:convnext_atto cmp:swin_femto
  g56:full c56:moganet_xtiny g56:no_gating g56:no_ca g56:plain c56:swin_femto c56:convnext_atto
  $(for m in moganet_xtiny swin_femto convnext_atto; do for s in 1 2; do echo "cs:$m:$s"; done; done)
  g56s:full:1 g56s:no_gating:1 g56s:full:2 g56s:no_gating:2 g56s:no_ca:1 g56s:no_ca:2 g56s:plain:1 g56s:plain:2"
THREADS=${THREADS:-1}
[[ $THREADS =~ ^[12]$ ]] || { echo "queue.sh: THREADS=$THREADS is not accepted; accepted: 1 (a thread per lane) or 2 (LANES=A: one lane)" >&2; exit 2; }
[[ ${LANES:-A B} =~ ^[AB]( [AB])?$ ]] || { echo "queue.sh: LANES=$LANES is not accepted; accepted: A, B or \"A B\"" >&2; exit 2; }
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
# Estimated minutes per unit on each CPU class (PLAN.md), the Xeon with AMX, else the AMD EPYC: a 28 px training
# and a row's curves as one of two one-thread lanes (measured in the grid's runs), a 28 px comparison model (training
# + curves + Grad-CAM, one thread), a later training seed of a 28 px comparison model (MINCS: training + curves,
# measured in compare28_3ep on the AMD EPYC: ConvNeXt-atto 50 + 75 min, Swin-femto 15 + 34; the Xeon ~2x), and a
# 56 px unit alone at 2 threads (benchmarks/study_speed.py's rates x 1.15 for data loading and evaluation; x 2 as one
# of two one-thread lanes). The AMD EPYC trains these models ~2x faster than the Xeon.
# A third class, an AMD EPYC with AVX2 only (Zen 3: no AVX-512), trains and infers 1.4-2.6x slower than the one with
# AVX-512 (study_speed.py, 2 threads alone, 2026-11-28): its estimates are the AVX-512 ones scaled by those ratios.
CPUINFO=${CPUINFO:-/proc/cpuinfo}
if grep -q amx "$CPUINFO" 2>/dev/null; then
  TRAIN_MIN=${TRAIN_MIN:-45} CURVES_MIN=${CURVES_MIN:-25}
  declare -A MINCMP=([convnext_atto]=175 [swin_femto]=70) MINCS=([convnext_atto]=250 [swin_femto]=100)
  declare -A MIN56=([g56]=135 [moganet_xtiny]=15 [swin_femto]=65 [convnext_atto]=190)
elif grep -q avx512f "$CPUINFO" 2>/dev/null; then
  TRAIN_MIN=${TRAIN_MIN:-40} CURVES_MIN=${CURVES_MIN:-22}
  declare -A MINCMP=([convnext_atto]=95 [swin_femto]=45) MINCS=([convnext_atto]=130 [swin_femto]=50)
  declare -A MIN56=([g56]=105 [moganet_xtiny]=15 [swin_femto]=55 [convnext_atto]=200)
else
  TRAIN_MIN=${TRAIN_MIN:-90} CURVES_MIN=${CURVES_MIN:-50}
  declare -A MINCMP=([convnext_atto]=175 [swin_femto]=80) MINCS=([convnext_atto]=240 [swin_femto]=90)
  declare -A MIN56=([g56]=275 [moganet_xtiny]=35 [swin_femto]=80 [convnext_atto]=370)
fi
deadline=$(date -u -d "${DEADLINE:-23:59}" +%s 2>/dev/null) ||  # HH:MM: its next occurrence (sessions cross midnight)
  { echo "queue.sh: DEADLINE=$DEADLINE is not accepted; accepted: HH:MM (UTC) or a date(1) time such as '2026-11-28 01:30'" >&2; exit 2; }
[[ ${DEADLINE:-23:59} =~ ^[0-9]{1,2}:[0-9]{2}$ ]] && [ "$deadline" -lt "$(date -u +%s)" ] && deadline=$((deadline + 86400))
mkdir -p "$CLAIMS"

finished() {  # row seed, cmp model, g56 row, c56 model, cs model:seed, or g56s row:seed
  [ "$1" = g56s ] && { seed_done "$OUT56/${2%%:*}/seed${2#*:}"; return; }
  [ "$1" = cmp ] && { [ -f "$CMP/$2/analysis.pt" ]; return; }
  [ "$1" = cs ] && { seed_done "$CMP/${2%%:*}/seed${2#*:}"; return; }
  [ "$1" = c56 ] && { [ -f "$CMP56/$2/analysis.pt" ]; return; }
  [ "$1" = g56 ] && { curves_done "$OUT56/$2"; return; }
  [ -f "$OUT/$1/seed$2/results.yaml" ] || return 1
  [ "$2" != 0 ] || curves_done "$OUT/$1"
}

images_in() {  # the distinct images of an interaction.csv (0 when it is missing)
  awk -F, 'NR == 1 {for (i = 1; i <= NF; i++) if ($i == "image_id") c = i; next} c {print $c}' "$1" 2>/dev/null |
    sort -u | wc -l
}

curves_done() {  # a row folder whose seed-0 run is trained and whose 32 images are all in interaction.csv
  [ -f "$1/seed0/results.yaml" ] && [ "$(images_in "$1/interaction.csv")" = 32 ]
}

seed_done() {  # a run folder that is trained and holds its curves on all 32 images
  [ -f "$1/results.yaml" ] && [ "$(images_in "$1/interaction.csv")" = 32 ]
}

minutes() {  # estimated minutes of a unit in this lane's mode
  case $1 in
    g56s) echo $(( MIN56[g56] * (3 - THREADS) )) ;;
    g56|c56) local m
      if [ "$2" = moganet_xtiny ]; then  # shared with g56:full once that is done; trained anew if its checkpoint is gone
        curves_done "$OUT56/full" || return
        { [ -f "$OUT56/full/seed0/best.ckpt" ] || [ -f "$CMP56/$2/results.yaml" ]; } && m=${MIN56[$2]} || m=${MIN56[g56]}
      else
        [ "$1" = g56 ] && m=${MIN56[g56]} || m=${MIN56[$2]}
      fi
      echo $(( m * (3 - THREADS) )) ;;
    cmp) echo "${MINCMP[$2]}" ;;
    cs) if [ "${2%%:*}" = moganet_xtiny ]; then  # the grid's run when its curves on that seed are there
          seed_done "$OUT/full/seed${2#*:}" && echo 1 || echo $((TRAIN_MIN + CURVES_MIN))
        else
          echo "${MINCS[${2%%:*}]}"
        fi ;;
    *) { [ "$2" = 1 ] || [ "$2" = 2 ]; } && echo "$TRAIN_MIN" || echo $((TRAIN_MIN + CURVES_MIN)) ;;
  esac
}

share_xt() {  # the 56 px grid's full row, seed 0, as the comparison's MogaNet-XT: run files and renamed curves (their
  # interaction time stays the grid's: the comparison's report names the shared runs and leaves them out of its total)
  local src=$OUT56/full/seed0 dst=$CMP56/moganet_xtiny
  [ -f "$dst/results.yaml" ] || [ ! -f "$src/best.ckpt" ] || ! curves_done "$OUT56/full" && return
  mkdir -p "$dst"
  cp "$src"/{config.yaml,metrics.csv,best.ckpt,last.ckpt} "$dst"/
  sed '2,$ s/^full,/moganet_xtiny,/' "$OUT56/full/interaction.csv" > "$dst/interaction.csv.tmp"
  mv "$dst/interaction.csv.tmp" "$dst/interaction.csv"
  cp "$src/results.yaml" "$dst/results.yaml"  # last: a results.yaml says the run folder is complete
}

share_xt_seed() {  # the 28 px grid's full row on seed $1 as the comparison's MogaNet-XT on that seed: the same
  # configuration (the seed-0 run is shared the same way) and its curves on the same images and design, renamed
  local src=$OUT/full/seed$1 dst=$CMP/moganet_xtiny/seed$1 f
  [ -f "$dst/results.yaml" ] || ! seed_done "$src" && return
  mkdir -p "$dst"
  cp "$src"/{config.yaml,metrics.csv} "$dst"/
  for f in best.ckpt last.ckpt; do [ ! -f "$src/$f" ] || cp "$src/$f" "$dst"/; done
  sed '2,$ s/^full,/moganet_xtiny,/' "$src/interaction.csv" > "$dst/interaction.csv.tmp"
  mv "$dst/interaction.csv.tmp" "$dst/interaction.csv"
  cp "$src/results.yaml" "$dst/results.yaml"  # last: a results.yaml says the run folder is complete
}

claim() {  # the other lane cannot take the same unit; a claim whose process has gone is stale. Claims are made
  # one at a time under a lock (flock): without it a lane could find the claim folder before its pid was written
  # and take it as stale (both lanes then ran the same unit)
  local d=$CLAIMS/$1 p
  {
    flock 9
    if [ -d "$d" ]; then
      p=$(cat "$d/pid" 2>/dev/null)
      { [ -n "$p" ] && kill -0 "$p" 2>/dev/null; } && return 1
      rm -rf "$d"
    fi
    mkdir "$d" && echo $BASHPID > "$d/pid"
  } 9> "$CLAIMS/.lock"
}

lane() {
  while true; do
    picked=
    for unit in $UNITS; do
      r=${unit%%:*}; s=${unit#*:}
      finished "$r" "$s" && continue
      need=$(minutes "$r" "$s"); [ -n "$need" ] || continue
      [ $(( $(date -u +%s) + need * 60 )) -le "$deadline" ] || continue
      claim "$r-$s" || continue
      picked="$r $s"; break
    done
    [ -n "$picked" ] || { echo "lane $1: nothing left that fits before ${DEADLINE:-23:59} UTC"; return; }
    set -- "$1" $picked
    echo "lane $1: $2 $3 at $(date -u +%H:%M)"
    if [ "$2" = cmp ]; then
      .venv/bin/python analysis/compare_models.py $CMP_ARGS --only "$3" || echo "failed: $2 $3"
    elif [ "$2" = cs ]; then
      [ "${3%%:*}" = moganet_xtiny ] && share_xt_seed "${3#*:}"
      .venv/bin/python analysis/compare_models.py $CMP_ARGS --only "${3%%:*}" --train-seeds "${3#*:}" \
        || echo "failed: $2 $3"
    elif [ "$2" = c56 ]; then
      [ "$3" = moganet_xtiny ] && share_xt
      .venv/bin/python analysis/compare_models.py $CMP56_ARGS --only "$3" || echo "failed: $2 $3"
    elif [ "$2" = g56s ]; then
      .venv/bin/python experiments/ablate.py --config $CFG56 --out $OUT56 --no-report --rows "${3%%:*}" \
        --seeds "${3#*:}" --curve-seeds "${3#*:}" || echo "failed: $2 $3"
    elif [ "$2" = g56 ]; then
      .venv/bin/python experiments/ablate.py --config $CFG56 --out $OUT56 --no-report --rows "$3" --seeds 0 \
        || echo "failed: $2 $3"
    else
      .venv/bin/python experiments/ablate.py --config $CFG --out $OUT --no-report --rows "$2" --seeds "$3" \
        || echo "failed: $2 seed $3"
    fi
    set -- "$1"
  done
}
run_dir() {  # the run folder a unit trains in, and the interaction cache its curves go to
  case $1 in
    cmp) echo "$CMP/$2 $CMP/$2/interaction.csv" ;;
    c56) echo "$CMP56/$2 $CMP56/$2/interaction.csv" ;;
    g56) echo "$OUT56/$2/seed0 $OUT56/$2/interaction.csv" ;;
    cs) echo "$CMP/${2%%:*}/seed${2#*:} $CMP/${2%%:*}/seed${2#*:}/interaction.csv" ;;
    g56s) echo "$OUT56/${2%%:*}/seed${2#*:} $OUT56/${2%%:*}/seed${2#*:}/interaction.csv" ;;
    *) [ "$2" = 0 ] && echo "$OUT/$1/seed0 $OUT/$1/interaction.csv" || echo "$OUT/$1/seed$2 -" ;;
  esac
}

status() {  # one line per unit; reads files only (no Python), so it can run beside the lanes
  local unit r s dir cache state log step epochs p done=0 total=0
  for unit in $UNITS; do
    r=${unit%%:*}; s=${unit#*:}; total=$((total + 1))
    if finished "$r" "$s"; then done=$((done + 1)); continue; fi
    read -r dir cache <<< "$(run_dir "$r" "$s")"
    p=$(cat "$CLAIMS/$r-$s/pid" 2>/dev/null)
    { [ -n "$p" ] && kill -0 "$p" 2>/dev/null; } && state="running (lane pid $p)" || state=waiting
    if [ -f "$dir/results.yaml" ]; then
      state+=", trained, curves on $(images_in "$cache") of 32 images"
    else
      log=$(ls -t "$dir"/logs/*/metrics.csv 2>/dev/null | head -1)
      epochs=$(awk '/^  epochs:/ {print $2; exit}' "$dir/config.yaml" 2>/dev/null)
      # the last step logged, and of how many: the steps per epoch from the step at which the epoch number first
      # went up in this log (a resumed run's log starts mid-way)
      step=$([ -n "$log" ] && awk -F, -v epochs="${epochs:-0}" '
        NR == 1 {for (i = 1; i <= NF; i++) {if ($i == "step") c = i; if ($i == "epoch") e = i}; next}
        c && $c != "" {last = $c; if (prev != "" && $e > prev && !per) per = $c / $e; prev = $e}
        END {if (last != "") printf "%d%s", last, (per && epochs ? sprintf(" of ~%d", per * epochs) : "")}' "$log")
      [ -n "$step" ] && state+=", training: step $step (${epochs:-?} epochs)" || state+=", not started"
      [ -f "$dir/last.ckpt" ] && state+=", last.ckpt kept (a restart resumes from it)"
    fi
    [ -f "$CARRY/$r@$s.tar" ] && state+=", packed in $CARRY/$r@$s.tar"
    echo "$r $s: $state"
  done
  echo "$done of $total units finished"
}

# Carrying an unfinished unit to the next session. Checkpoints and training logs are git-ignored, so a session that
# starts on a fresh machine has lost them and redoes the unit from its start; a unit longer than a session then never
# finishes. What a session leaves uncommitted (and not ignored) can reach the next machine, so `--carry`, at the
# session's end with the lanes stopped, packs each unfinished unit's last.ckpt, best.ckpt and logs/ into
# studies/carry/<unit>.tar (never committed: .gitignore cannot list it, or it would not be carried), and a queue
# started on the next machine unpacks them into run folders that lack them. A pack also holds the run's results.yaml
# if it had one, and is unpacked only while the run folder is in that same state: a pack from mid-training must not
# meet curves computed on a later best.ckpt.
CARRY=studies/carry

carry_save() {
  local unit r s dir cache f pack files
  mkdir -p "$CARRY"
  for unit in $UNITS; do
    r=${unit%%:*}; s=${unit#*:}; pack=$CARRY/$r@$s.tar
    if finished "$r" "$s"; then rm -f "$pack"; continue; fi
    read -r dir cache <<< "$(run_dir "$r" "$s")"
    files=()
    for f in last.ckpt best.ckpt logs results.yaml; do
      [ -e "$dir/$f" ] || continue
      # trained (results.yaml): the curves and Grad-CAM read best.ckpt only, so last.ckpt (half the pack) stays here
      [ "$f" = last.ckpt ] && [ -f "$dir/results.yaml" ] && [ -f "$dir/best.ckpt" ] && continue
      files+=("$f")
    done
    [[ " ${files[*]} " =~ \.ckpt ]] || continue
    tar -cf "$pack.tmp" -C "$dir" "${files[@]}" && mv "$pack.tmp" "$pack" &&
      echo "carried $r $s: ${files[*]} ($(du -h "$pack" | cut -f1))"
  done
}

carry_restore() {
  local pack name r s dir cache
  for pack in "$CARRY"/*@*.tar; do
    [ -f "$pack" ] || continue
    name=$(basename "$pack" .tar); r=${name%%@*}; s=${name#*@}
    if finished "$r" "$s"; then rm -f "$pack"; continue; fi
    read -r dir cache <<< "$(run_dir "$r" "$s")"
    { [ -f "$dir/last.ckpt" ] || [ -f "$dir/best.ckpt" ]; } && continue  # this machine kept its own
    if [ "$(tar -xOf "$pack" results.yaml 2>/dev/null)" != "$(cat "$dir/results.yaml" 2>/dev/null)" ]; then
      echo "not restored $r $s: $pack was packed when the run's results.yaml was different (stale)"; continue
    fi
    mkdir -p "$dir" && tar -xf "$pack" -C "$dir" --exclude=results.yaml && echo "restored $r $s from $pack"
  done
}

if [ "${1:-}" = --status ]; then status; exit 0; fi
if [ "${1:-}" = --carry ]; then carry_save; exit 0; fi
[ $# -eq 0 ] || { echo "queue.sh: $1 is not accepted; accepted: no argument (run the lanes), --status or --carry" >&2; exit 2; }
carry_restore | tee -a studies/carry.log  # what was unpacked, also when the queue runs under nohup
for name in ${LANES:-A B}; do lane "$name" >> "studies/lane_$name.log" 2>&1 & done
wait
