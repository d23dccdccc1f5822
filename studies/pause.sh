#!/usr/bin/env bash
# Pause (stop) or resume (cont) the study lanes, e.g. around a benchmark or a test run; logged in studies/pauses.log.
# Runs started since 2026-11-27 14:40 UTC do not count a pause in their wall times (moga_lab.runtime.running_time);
# the log says which earlier wall times include one.
cd "$(dirname "$0")/.."
sig=${1:?usage: studies/pause.sh stop|cont}
pids=$(pgrep -f "experiments/ablate.py|analysis/compare_models.py")
[ -n "$pids" ] && kill -s "${sig^^}" $pids
echo "$(date -u +%FT%TZ) $sig $(echo $pids | wc -w) processes" >> studies/pauses.log
