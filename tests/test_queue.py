"""studies/queue.sh, the issue-18 job queue, with stub commands in place of the trainings: which units run, in
which mode, each once, and what the 56 px comparison takes over from the 56 px grid (in either mode)."""
import datetime
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which('bash') is None, reason='needs bash')

# stands in for .venv/bin/python: logs each job (with its thread count), writes what the real one leaves behind
STUB = r'''#!/usr/bin/env bash
if [ "$1" = -c ]; then exec "$REAL_PY" "$@"; fi
script=$1; shift
out= only= rows= seeds= train= curves=
while [ $# -gt 0 ]; do
  case $1 in --out) out=$2; shift;; --only) only=$2; shift;; --rows) rows=$2; shift;; --seeds) seeds=$2; shift;;
    --train-seeds) train=$2; seeds=$2; shift;; --curve-seeds) curves=$2; shift;; esac
  shift
done
echo "$script ${rows:-$only} ${seeds:--} $OMP_NUM_THREADS $out" >> "$JOBS"
if [ "$script" = experiments/ablate.py ]; then
  d=$out/$rows/seed$seeds; mkdir -p "$d"; touch "$d/best.ckpt" "$d/last.ckpt" "$d/config.yaml" "$d/metrics.csv"
  echo "test_top1: 90.0" > "$d/results.yaml"
  if [ "$seeds" = 0 ]; then
    { echo model,image_id,J; for i in $(seq 1 32); do echo "$rows,$i,0.5"; done; } > "$out/$rows/interaction.csv"
    echo "interaction_seconds: 600.0" > "$out/wall_times.yaml"
  elif [ -n "$curves" ]; then  # a later seed's curves on its own checkpoint
    { echo model,image_id,J; for i in $(seq 1 32); do echo "$rows,$i,0.5"; done; } > "$d/interaction.csv"
  fi
elif [ -n "$train" ]; then  # another training seed: its run and curves (a finished one is left as it is)
  d=$out/$only/seed$train
  if [ ! -f "$d/results.yaml" ]; then
    mkdir -p "$d"; echo "test_top1: 85.0" > "$d/results.yaml"
    { echo model,image_id,J; for i in $(seq 1 32); do echo "$only,$i,0.5"; done; } > "$d/interaction.csv"
  fi
else
  mkdir -p "$out/$only"; touch "$out/$only/analysis.pt"; echo "test_top1: 85.0" > "$out/$only/results.yaml"
fi
'''


def _queue(root, jobs, **env):
    done = subprocess.run(['bash', str(root / 'studies' / 'queue.sh')], capture_output=True, text=True, timeout=600,
                          env={**os.environ, 'JOBS': str(jobs), 'REAL_PY': sys.executable, **env})
    assert done.returncode == 0, done.stderr
    return [line.split() for line in jobs.read_text().splitlines()] if jobs.exists() else []


@pytest.fixture
def root(tmp_path):
    (tmp_path / 'studies').mkdir()
    shutil.copy(ROOT / 'studies' / 'queue.sh', tmp_path / 'studies')
    stub = tmp_path / '.venv' / 'bin' / 'python'
    stub.parent.mkdir(parents=True)
    stub.write_text(STUB)
    stub.chmod(0o755)
    return tmp_path


def _in(minutes):
    return (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=minutes)).strftime('%H:%M')


def _check_shared_xt(root):
    # the 56 px comparison's MogaNet-XT is the 56 px grid's full row: its run files and curves (renamed); their
    # interaction time stays the grid's (the comparison's report names the shared run instead)
    shared = root / 'studies' / 'compare56_3ep' / 'moganet_xtiny'
    assert (shared / 'best.ckpt').is_file() and (shared / 'results.yaml').is_file()
    curves = pd.read_csv(shared / 'interaction.csv')
    assert set(curves.model) == {'moganet_xtiny'} and curves.image_id.nunique() == 32
    assert not (root / 'studies' / 'compare56_3ep' / 'wall_times.yaml').exists()


UNITS56 = [('ablate.py', 'full'), ('compare_models.py', 'moganet_xtiny'), ('ablate.py', 'no_gating'),
           ('ablate.py', 'no_ca'), ('ablate.py', 'plain'), ('compare_models.py', 'swin_femto'),
           ('compare_models.py', 'convnext_atto')]


def _cpu(tmp_path, flags):
    info = tmp_path / f'cpuinfo_{flags[-1]}'
    info.write_text(f'processor\t: 0\nflags\t\t: fpu sse2 {" ".join(flags)}\n')
    return str(info)


def test_queue_deadline_then_every_unit_once_in_two_lanes(root, tmp_path):
    # 60 minutes left on the AVX-512 AMD EPYC: a seed-0 unit (training + curves, ~62 min), ConvNeXt-atto (95 min) and
    # every 56 px unit (>= 110 min at one thread) do not fit, later seeds (~40 min) do
    jobs = tmp_path / 'jobs1.txt'
    ran = _queue(root, jobs, DEADLINE=_in(60), CPUINFO=_cpu(tmp_path, ['avx2', 'avx512f']))
    trained = [(unit, seed) for script, unit, seed, *_ in ran if script.endswith('ablate.py')]
    assert len(trained) == len(set(trained)) == 8 * 2 and all(seed in ('1', '2') for _, seed in trained)
    assert {unit for script, unit, *_ in ran if script.endswith('compare_models.py')} <= {'swin_femto'}
    assert not any('56' in out for *_, out in ran)

    # all day (a machine that persists): two one-thread lanes run every unit exactly once, the 56 px ones included;
    # the 56 px comparison's MogaNet-XT waits for the grid's full row and takes it over
    jobs = tmp_path / 'jobs2.txt'
    ran = _queue(root, jobs, DEADLINE=_in(23 * 60))
    units = [(script, unit, seed, out) for script, unit, seed, _, out in ran]
    assert len(units) == len(set(units)) and {threads for *_, threads, _ in ran} == {'1'}
    assert sum(s.endswith('ablate.py') and '56' not in out for s, _, _, out in units) == 8
    assert sorted((Path(s).name, u) for s, u, seed, out in units if '56' in out and seed in ('0', '-')) == sorted(UNITS56)
    done56 = [(Path(s).name, u) for s, u, _, out in units if '56' in out]
    assert done56.index(('ablate.py', 'full')) < done56.index(('compare_models.py', 'moganet_xtiny'))
    assert all((root / 'studies' / 'compare28_3ep' / m / 'analysis.pt').is_file() for m in ('convnext_atto', 'swin_femto'))
    _check_shared_xt(root)
    # last, the 28 px comparison's models on training seeds 1 and 2 (MogaNet-XT trained too: no grid curves on them;
    # Swin-femto's may have fit the 60 minutes above)
    seeds = [(u, seed) for s, u, seed, _ in units if s.endswith('compare_models.py') and seed != '-']
    assert {('convnext_atto', '1'), ('convnext_atto', '2'), ('moganet_xtiny', '1'), ('moganet_xtiny', '2')} <= set(seeds)
    assert all((root / 'studies' / 'compare28_3ep' / m / f'seed{s}' / 'results.yaml').is_file()
               for m in ('moganet_xtiny', 'swin_femto', 'convnext_atto') for s in (1, 2))
    # then the 56 px key rows on training seeds 1 and 2, each with its own curves (gating's rows first)
    seeds56 = [(u, seed) for s, u, seed, _, out in ran if s.endswith('ablate.py') and '56' in out and seed != '0']
    assert sorted(seeds56) == sorted((r, s) for r in ('full', 'no_gating', 'no_ca', 'plain') for s in ('1', '2'))
    assert seeds56.index(('no_gating', '2')) < seeds56.index(('no_ca', '1'))
    assert all(pd.read_csv(root / 'studies' / 'ablation_56px' / r / f'seed{s}' / 'interaction.csv').image_id.nunique() == 32
               for r, s in seeds56)
    assert _queue(root, tmp_path / 'jobs3.txt', DEADLINE=_in(23 * 60)) == []


def test_queue_one_two_thread_lane_runs_the_56px_units_in_order(root, tmp_path):
    # the 56 px units in one two-thread lane: the grid's full row first, then the comparison's MogaNet-XT shares it
    jobs = tmp_path / 'jobs1.txt'
    ran = _queue(root, jobs, DEADLINE=_in(23 * 60), LANES='A', THREADS='2')
    assert [(Path(s).name, u) for s, u, seed, _, out in ran if '56' in out and seed in ('0', '-')] == UNITS56
    assert {threads for *_, threads, _ in ran} == {'2'}
    _check_shared_xt(root)

    # nothing is left: a further call runs nothing
    jobs = tmp_path / 'jobs2.txt'
    assert _queue(root, jobs, DEADLINE=_in(23 * 60), LANES='A', THREADS='2') == []


@pytest.mark.parametrize('env, message', [
    ({'DEADLINE': '25:99'}, 'DEADLINE=25:99 is not accepted; accepted: HH:MM (UTC)'),
    ({'THREADS': '3'}, 'THREADS=3 is not accepted; accepted: 1 (a thread per lane) or 2 (LANES=A: one lane)'),
    ({'LANES': 'C'}, 'LANES=C is not accepted; accepted: A, B or "A B"'),
])
def test_queue_bad_settings_are_one_line_and_run_nothing(root, tmp_path, env, message):
    jobs = tmp_path / 'jobs.txt'
    done = subprocess.run(['bash', str(root / 'studies' / 'queue.sh')], capture_output=True, text=True, timeout=60,
                          env={**os.environ, 'JOBS': str(jobs), 'REAL_PY': sys.executable, **env})
    assert done.returncode == 2 and message in done.stderr and done.stderr.count('\n') == 1, done.stderr
    assert not jobs.exists() and not (root / 'studies' / 'ablation_converged').exists()


def test_queues_started_together_run_each_unit_once(root, tmp_path):
    # four queues of two lanes each start at once on one folder: eight lanes race for every claim (a lane that
    # found a claim folder before its pid was written used to take it as stale, and two lanes ran one unit)
    jobs = tmp_path / 'jobs.txt'
    env = {**os.environ, 'JOBS': str(jobs), 'REAL_PY': sys.executable, 'DEADLINE': _in(23 * 60)}
    queues = [subprocess.Popen(['bash', str(root / 'studies' / 'queue.sh')], env=env) for _ in range(4)]
    assert all(q.wait(timeout=600) == 0 for q in queues)
    units = [tuple(line.split()[:3]) + tuple(line.split()[4:]) for line in jobs.read_text().splitlines()]
    assert len(units) == len(set(units)) == 8 * 3 + 2 + 7 + 6 + 8, sorted(units)


def test_queue_takes_moganet_seeds_of_the_comparison_from_the_grid(root, tmp_path):
    # the grid's full row on seed 1 with its curves (as ablate.py --curve-seeds leaves it): the comparison's MogaNet-XT
    # on seed 1 is that run, its curves renamed; seed 2 has no grid curves and is trained
    grid = root / 'studies' / 'ablation_converged' / 'full' / 'seed1'
    grid.mkdir(parents=True)
    for name in ('config.yaml', 'metrics.csv'):
        (grid / name).write_text('x\n')
    (grid / 'results.yaml').write_text('test_top1: 90.86\n')
    (grid / 'interaction.csv').write_text('model,image_id,J\n' + ''.join(f'full,{i},0.{i}\n' for i in range(1, 33)))
    queue = root / 'studies' / 'queue.sh'
    text = queue.read_text()
    start, end = text.index('UNITS="'), text.index('THREADS=${THREADS:-1}')
    queue.write_text(text[:start] + 'UNITS="cs:moganet_xtiny:1 cs:moganet_xtiny:2"\n' + text[end:])  # these two only
    ran = _queue(root, tmp_path / 'jobs.txt', DEADLINE=_in(23 * 60), LANES='A')
    assert [(u, s) for _, u, s, *_ in ran] == [('moganet_xtiny', '1'), ('moganet_xtiny', '2')]
    shared = root / 'studies' / 'compare28_3ep' / 'moganet_xtiny' / 'seed1'
    assert (shared / 'results.yaml').read_text() == 'test_top1: 90.86\n'
    curves = pd.read_csv(shared / 'interaction.csv')
    assert set(curves.model) == {'moganet_xtiny'} and curves.image_id.nunique() == 32 and curves.J.iloc[0] == 0.1


def test_queue_status_names_each_unfinished_unit_and_its_progress(root, tmp_path):
    # the 28 px grid finished (stub runs), then: the 56 px plain row training in a live lane (its log resumed mid-way,
    # at epoch 1 of 3, 100 steps per epoch), no_ca trained with 5 of its 32 images' curves, nobody holding it
    _queue(root, tmp_path / 'jobs.txt', DEADLINE=_in(60), CPUINFO=_cpu(tmp_path, ['avx512f']))
    studies = root / 'studies'
    plain = studies / 'ablation_56px' / 'plain' / 'seed0'
    (plain / 'logs' / 'version_1').mkdir(parents=True)
    (plain / 'config.yaml').write_text('trainer:\n  epochs: 3\n  seed: 0\n')
    (plain / 'last.ckpt').touch()
    (plain / 'logs' / 'version_1' / 'metrics.csv').write_text(
        'epoch,lr,step,train/loss_step,val/acc1\n0,0.1,59,1.0,\n0,0.1,79,1.0,\n1,,99,,0.8\n1,0.1,119,0.9,\n1,0.1,139,0.9,\n')
    claim = studies / 'ablation_converged' / '.claims' / 'g56-plain'
    claim.mkdir(parents=True)
    (claim / 'pid').write_text(f'{os.getpid()}\n')
    no_ca = studies / 'ablation_56px' / 'no_ca'
    (no_ca / 'seed0').mkdir(parents=True)
    (no_ca / 'seed0' / 'results.yaml').write_text('test_top1: 92.6\n')
    (no_ca / 'interaction.csv').write_text('model,image_id,J\n' + ''.join(f'no_ca,{i},0.5\n' for i in range(5)))
    done = subprocess.run(['bash', str(studies / 'queue.sh'), '--status'], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f'g56 plain: running (lane pid {os.getpid()}), training: step 139 of ~297 (3 epochs), last.ckpt kept ' \
           '(a restart resumes from it)' in lines
    assert 'g56 no_ca: waiting, trained, curves on 5 of 32 images' in lines
    assert 'g56 full: waiting, not started' in lines and 'g56s full:1: waiting, not started' in lines
    assert not [line for line in lines if line.startswith(('full 1:', 'no_gating 2:'))]  # finished units: counted only
    assert lines[-1].endswith('of 47 units finished')
    # status reads files only: nothing was run or claimed
    assert (claim / 'pid').read_text() == f'{os.getpid()}\n' and not (studies / 'lane_A.log').read_text().count('g56')
    bad = subprocess.run(['bash', str(studies / 'queue.sh'), '--stats'], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr == 'queue.sh: --stats is not accepted; accepted: no argument (run the lanes), --status or --carry\n'


def test_queue_estimates_follow_the_cpu_class(root, tmp_path):
    # the AVX2-only AMD EPYC trains ~2x slower than the AVX-512 one: 60 minutes fit no unit there (a later seed ~90 min)
    assert _queue(root, tmp_path / 'jobs_avx2.txt', DEADLINE=_in(60), CPUINFO=_cpu(tmp_path, ['avx2'])) == []
    assert _queue(root, tmp_path / 'jobs_amx.txt', DEADLINE=_in(60), CPUINFO=_cpu(tmp_path, ['avx512f', 'amx_tile']))


def test_queue_carries_an_unfinished_unit_to_a_fresh_machine(root, tmp_path):
    studies = root / 'studies'
    _queue(root, tmp_path / 'jobs.txt', DEADLINE=_in(60), CPUINFO=_cpu(tmp_path, ['avx512f']))  # later seeds: finished
    # the 56 px plain row mid-training (a last.ckpt and a log), no_ca trained with part of its curves
    plain = studies / 'ablation_56px' / 'plain' / 'seed0'
    (plain / 'logs' / 'version_0').mkdir(parents=True)
    (plain / 'last.ckpt').write_bytes(b'step 500')
    (plain / 'logs' / 'version_0' / 'metrics.csv').write_text('epoch,step\n1,499\n')
    (plain / 'config.yaml').write_text('trainer:\n  epochs: 3\n')
    no_ca = studies / 'ablation_56px' / 'no_ca' / 'seed0'
    no_ca.mkdir(parents=True)
    (no_ca / 'best.ckpt').write_bytes(b'best of no_ca')
    (no_ca / 'last.ckpt').write_bytes(b'last of no_ca')
    (no_ca / 'results.yaml').write_text('test_top1: 92.6\n')
    finished = studies / 'ablation_converged' / 'full' / 'seed1'
    (studies / 'carry').mkdir()
    (studies / 'carry' / 'full@1.tar').write_bytes(b'an old pack of a unit since finished')
    done = subprocess.run(['bash', str(studies / 'queue.sh'), '--carry'], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (studies / 'carry').iterdir()) == ['g56@no_ca.tar', 'g56@plain.tar']
    assert 'carried g56 plain: last.ckpt logs' in done.stdout and (finished / 'results.yaml').is_file()
    # a trained unit's curves read best.ckpt only: its last.ckpt (as large) is not carried
    assert 'carried g56 no_ca: best.ckpt results.yaml' in done.stdout
    assert 'last.ckpt' not in subprocess.run(['tar', '-tf', str(studies / 'carry' / 'g56@no_ca.tar')],
                                             capture_output=True, text=True).stdout
    assert 'packed in studies/carry/g56@plain.tar' in subprocess.run(
        ['bash', str(studies / 'queue.sh'), '--status'], capture_output=True, text=True, timeout=60).stdout

    # the next machine: git-ignored files are gone. no_ca's pack is from before a retraining (its results.yaml differs
    # now), so its best.ckpt must not meet this run's curves
    shutil.rmtree(plain / 'logs')
    (plain / 'last.ckpt').unlink()
    (no_ca / 'best.ckpt').unlink()
    (no_ca / 'last.ckpt').unlink()
    (no_ca / 'results.yaml').write_text('test_top1: 92.1\n')
    _queue(root, tmp_path / 'jobs_next.txt', DEADLINE=_in(1), LANES='A')  # nothing fits: the restore alone
    assert (plain / 'last.ckpt').read_bytes() == b'step 500'
    assert (plain / 'logs' / 'version_0' / 'metrics.csv').read_text() == 'epoch,step\n1,499\n'
    assert not (no_ca / 'best.ckpt').exists()
    log = (studies / 'carry.log').read_text()
    assert 'restored g56 plain from studies/carry/g56@plain.tar' in log
    assert 'not restored g56 no_ca: studies/carry/g56@no_ca.tar was packed when the run\'s results.yaml was different' in log
