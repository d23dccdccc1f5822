#!/usr/bin/env bash
# Pause (stop) or resume (cont) the study lanes, e.g. around a benchmark or a test run; logged in studies/pauses.log
# because per-image interaction wall times count the pause (subtract it before publishing: add_wall_time).
cd "$(dirname "$0")/.."
sig=${1:?usage: studies/pause.sh stop|cont}
pids=$(pgrep -f "experiments/ablate.py|analysis/compare_models.py")
[ -n "$pids" ] && kill -s "${sig^^}" $pids
echo "$(date -u +%FT%TZ) $sig $(echo $pids | wc -w) processes" >> studies/pauses.log
