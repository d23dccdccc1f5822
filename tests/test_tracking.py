"""Trackers and study store (TensorBoard, MLflow) and grids as jobs (submitit), read back through the tools' own APIs."""
import importlib.util
import os
import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_script
import yaml

from moga_lab.cli import fit as fit_cli
from moga_lab.data import DEFAULT_FASHION_MNIST_DIR

pytestmark = pytest.mark.slow  # trains, or runs commands end to end: `make test-fast` leaves it out

ROOT = Path(__file__).resolve().parents[1]
SYN = ['--variant', 'xt', '--data', 'synthetic', '--image-size', '28', '--epochs', '2', '--limit-train-batches', '3',
       '--no-progress']
has_mlflow = importlib.util.find_spec('mlflow') is not None
needs_mlflow = pytest.mark.skipif(not has_mlflow, reason="mlflow not installed (pip install 'moga_lab[tracking]')")
needs_fmnist = pytest.mark.skipif(not os.path.isdir(DEFAULT_FASHION_MNIST_DIR), reason='dataset-fashion-mnist missing')


@pytest.fixture(autouse=True)
def _fresh_run_dir(monkeypatch):
    monkeypatch.delenv('MOGA_LAB_RUN_DIR', raising=False)


_run = run_script


def test_fit_logs_to_tensorboard_by_default(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    (tmp_path / 'every_step.yaml').write_text('trainer: {log_every_n_steps: 1}\n')
    assert fit_cli.main(SYN + ['--run-dir', str(tmp_path / 'r'), '--interaction-every', '2', '--interaction-images', '1',
                               '--config', str(tmp_path / 'every_step.yaml')]) == 0
    assert (tmp_path / 'r' / 'metrics.csv').is_file()  # the CSV the reports read is still there
    events = sorted((tmp_path / 'r' / 'tensorboard').rglob('events.out.tfevents.*'))
    assert events
    scalars, images, plugins = set(), set(), set()
    for path in events:
        acc = EventAccumulator(str(path), size_guidance={'images': 0, 'scalars': 0})
        acc.Reload()
        scalars |= set(acc.Tags()['scalars'])
        images |= set(acc.Tags()['images'])
        try:
            if acc.PluginTagToContent('hparams'):
                plugins.add('hparams')
        except KeyError:  # this event file holds no HParams data
            pass
    assert {'train/loss_step', 'train/loss_epoch', 'lr', 'val/acc1', 'test/acc1', 'train/images_per_second',
            'interaction/middle_share'} <= scalars, scalars
    assert {'learning_curve', 'interaction_by_epoch'} <= images, images
    assert 'hparams' in plugins  # the HParams view: config keys beside the final metrics


@needs_mlflow
def test_fit_logs_to_mlflow_and_the_numbers_match(tmp_path):
    from mlflow import MlflowClient
    uri = f'sqlite:///{tmp_path}/store/mlflow.db'
    assert fit_cli.main(SYN + ['--run-dir', str(tmp_path / 'r'), '--logger', 'mlflow', '--tracking-uri', uri]) == 0
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name('fit').experiment_id])
    assert len(runs) == 1
    results = yaml.safe_load((tmp_path / 'r' / 'results.yaml').read_text())
    assert runs[0].data.metrics['test/acc1'] == pytest.approx(results['test/acc1'], abs=1e-9)
    assert runs[0].data.params['config/model/name'] == 'moganet_xtiny'  # the run's configuration as parameters
    assert 'figures/learning_curve.png' in [a.path for a in client.list_artifacts(runs[0].info.run_id, 'figures')]
    # resuming continues the same MLflow run
    assert fit_cli.main(SYN + ['--run-dir', str(tmp_path / 'r'), '--logger', 'mlflow', '--tracking-uri', uri,
                               '--epochs', '3', '--resume']) == 0
    assert len(client.search_runs([client.get_experiment_by_name('fit').experiment_id])) == 1


@pytest.mark.parametrize('argv, message', [
    (['--logger', 'neptune'], "--logger neptune is not accepted; accepted: any of csv, tensorboard, mlflow, wandb"),
    (['--logger', 'mlflow', '--tracking-uri', 'http://127.0.0.1:9'], 'cannot be reached'),
    (['--logger', 'mlflow', '--tracking-uri', 'ftp://x'], 'is not accepted'),
    (['--tracking-uri', 'sqlite:///x.db'], 'add mlflow to --logger'),
])
def test_fit_tracker_problems_stop_before_training(tmp_path, capsys, argv, message):
    if 'mlflow' in argv and not has_mlflow:
        pytest.skip('mlflow not installed')
    with pytest.raises(SystemExit) as info:
        fit_cli.main(SYN + ['--run-dir', str(tmp_path / 'r')] + argv)
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / 'r').exists()  # nothing started


def test_missing_optional_tracker_names_the_extra(tmp_path, capsys):
    if importlib.util.find_spec('wandb') is not None:
        pytest.skip('wandb is installed here')
    with pytest.raises(SystemExit) as info:
        fit_cli.main(SYN + ['--run-dir', str(tmp_path / 'r'), '--logger', 'tensorboard,wandb'])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "pip install 'moga_lab[wandb]'" in err


def test_slurm_executor_without_slurm_is_one_line(tmp_path):
    if __import__('shutil').which('sbatch'):
        pytest.skip('Slurm is present')
    done = _run('experiments/ablate.py', ['--quick', '--executor', 'slurm', '--out', str(tmp_path / 'a')], tmp_path)
    assert done.returncode == 2 and 'no Slurm on this machine' in done.stderr, done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / 'a').exists()


@needs_mlflow
@needs_fmnist
def test_ablation_grid_as_local_jobs_recorded_in_the_study_store(tmp_path):
    """The quick grid (2 rows x 2 seeds) as four processes, two at a time; every row (and seed) in MLflow with the
    numbers of ablation.csv; a run missing its results is reported, not invented."""
    from mlflow import MlflowClient
    out, uri = tmp_path / 'abl', f'sqlite:///{tmp_path}/mlflow.db'
    args = ['--quick', '--rows', 'full', 'no_gating', '--out', str(out), '--executor', 'local', '--concurrency', '2',
            '--tracking-uri', uri]
    done = _run('experiments/ablate.py', args, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert '4 jobs, 2 at a time, 1 thread(s) each' in done.stdout
    assert len(list((out / 'jobs').glob('*_log.out'))) == 4  # each (row, seed) was its own process
    table = pd.read_csv(out / 'ablation.csv')
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name('ablation')
    runs = client.search_runs([exp.experiment_id])
    rows = {r.data.tags['row']: r for r in runs if 'row' in r.data.tags and 'seed' not in r.data.tags}
    seeds = [r for r in runs if 'seed' in r.data.tags]
    assert sorted(rows) == ['full', 'no_gating'] and len(seeds) == 4
    for _, r in table.iterrows():
        metrics = rows[r['row']].data.metrics
        assert metrics['top1_mean'] == pytest.approx(r['top1_mean'], abs=1e-9)
        assert metrics['middle_share'] == pytest.approx(r['middle_share_0.2-0.6n'], abs=1e-9)
    for s in seeds:
        assert s.data.tags['mlflow.parentRunId'] == rows[s.data.tags['row']].info.run_id
        res = yaml.safe_load((out / s.data.tags['row'] / f'seed{s.data.tags["seed"]}' / 'results.yaml').read_text())
        assert s.data.metrics['top1'] == pytest.approx(100 * res['test/acc1'], abs=1e-9)
    # a row whose seed lost its results: the report says so, and the store is rewritten, not duplicated
    os.remove(out / 'no_gating' / 'seed1' / 'results.yaml')
    again = _run('experiments/ablate.py', args[:-4] + ['--tracking-uri', uri], tmp_path)  # inline: trains it again
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(client.search_runs([exp.experiment_id])) == len(runs)


def _ablate_module():
    import moga_lab.cli.ablate as module
    return module


@needs_mlflow
@needs_fmnist
def test_store_failing_after_the_study_loses_nothing_and_missing_runs_are_reported(tmp_path, monkeypatch):
    from moga_lab.utils.tracking import StudyStore
    out = tmp_path / 'abl'

    def broken(self, *args, **kwargs):
        raise RuntimeError('disk full')
    monkeypatch.setattr(StudyStore, 'record', broken)
    with pytest.warns(UserWarning, match='could not record .* the CSV files hold the results'):
        _ablate_module().main(['--quick', '--rows', 'full', '--out', str(out), '--tracking-uri',
                               f'sqlite:///{tmp_path}/m.db'])
    assert pd.read_csv(out / 'ablation.csv').seeds.tolist() == [2]  # the study itself is complete
    # a job that fails (its run directory made unusable: config.yaml cannot be written) while the others finish
    seed1 = out / 'full' / 'seed1'
    for name in ('results.yaml', 'last.ckpt', 'config.yaml'):
        os.remove(seed1 / name)
    (seed1 / 'config.yaml').mkdir()
    again = _run('experiments/ablate.py', ['--quick', '--rows', 'full', '--out', str(out), '--no-tracking',
                                           '--executor', 'local'], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert 'not finished' in again.stderr and 'full/seed1' in again.stderr and 'failed jobs' in again.stderr
    table = pd.read_csv(out / 'ablation.csv')
    assert table.seeds.tolist() == [1]
    report = (out / 'ablation.md').read_text()  # the report says which runs its tables lack
    assert 'Not finished yet, so left out of every table and figure here: full/seed1.' in report
    assert re.search(r'\| full +\| .* \| +1 \| ', report), report


@needs_fmnist
def test_no_report_lists_only_the_seeds_still_unfinished_when_it_prints(tmp_path, monkeypatch, capsys):
    """A partial run (``--no-report --seeds 0``) prints what is not finished after the row's curves, which take
    minutes: a seed another process finished meanwhile is not listed."""
    ablate = _ablate_module()
    import moga_lab.studies.ablation as grid  # where the curves are computed
    out = tmp_path / 'abl'

    def curves_while_another_job_finishes_seed1(checkpoints, cache, wall_times, **kwargs):
        seed1 = out / 'full' / 'seed1'
        seed1.mkdir(parents=True, exist_ok=True)
        (seed1 / 'results.yaml').write_text(yaml.safe_dump({'test/acc1': 0.5, 'train_images_per_second': 1.0}))
        return pd.DataFrame()
    monkeypatch.setattr(grid, 'interaction_of_checkpoints', curves_while_another_job_finishes_seed1)
    args = ['--quick', '--rows', 'full', '--seeds', '0', '--no-report', '--out', str(out), '--no-tracking']
    (out / 'full').mkdir(parents=True)
    ablate.main(args)
    assert 'not finished' not in capsys.readouterr().err
    os.remove(out / 'full' / 'seed1' / 'results.yaml')  # seed 1 unfinished for good: still listed
    monkeypatch.setattr(grid, 'interaction_of_checkpoints', lambda *a, **k: pd.DataFrame())
    ablate.main(args)
    assert 'full/seed1' in capsys.readouterr().err


_OPEN_AT_ONCE = '''
import os, sys, time
from moga_lab.utils.tracking import open_study_store
import mlflow.store.tracking.sqlalchemy_store  # imported before the start signal, so the processes overlap
go = sys.argv[2]
open(go + '.ready.' + str(os.getpid()), 'w').close()
while not os.path.exists(go):
    time.sleep(0.01)
store = open_study_store(sys.argv[1], 'interaction')
print(store.experiment_id)
'''


@needs_mlflow
def test_commands_starting_together_on_a_new_sqlite_store_all_reach_it(tmp_path):
    # a study's units start together; the first ones both create the store (schema migrations) and the experiment
    import subprocess
    import sys
    import time
    uri, go = f'sqlite:///{tmp_path}/new/mlflow.db', tmp_path / 'go'
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}
    procs = [subprocess.Popen([sys.executable, '-c', _OPEN_AT_ONCE, uri, str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(3)]
    deadline = time.time() + 300
    while len(list(tmp_path.glob('go.ready.*'))) < 3 and time.time() < deadline:
        time.sleep(0.05)
    go.touch()
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _, err in results]
    assert len({out.strip() for out, _ in results}) == 1  # one experiment, found by the others


@needs_mlflow
def test_a_store_lock_held_too_long_is_a_one_line_error_naming_the_lock(tmp_path, monkeypatch):
    import filelock
    from moga_lab.utils import tracking
    uri = f'sqlite:///{tmp_path}/mlflow.db'
    tracking.open_study_store(uri, 'interaction')  # the store exists; its lock is free again
    monkeypatch.setattr(tracking, 'STORE_LOCK_TIMEOUT_S', 0.2)
    with filelock.FileLock(f'{tmp_path}/mlflow.db.lock'):  # another command, stuck while holding it
        for opening in (lambda: tracking.open_study_store(uri, 'interaction'),
                        lambda: tracking.StudyStore(uri, 'other')):
            with pytest.raises(tracking.TrackingError, match=r'mlflow\.db\.lock.*--no-tracking'):
                opening()
    assert tracking.StudyStore(uri, 'other').experiment_id  # released: it opens again
