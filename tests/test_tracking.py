"""Trackers and study store (TensorBoard, MLflow) and grids as jobs (submitit), read back through the tools' own APIs."""
import importlib.util
import os
from pathlib import Path

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


def test_a_generated_study_s_units_record_to_the_study_store(tmp_path):
    """A study file from moga-compare / moga-ablate with --tracking-uri: every training logs to MLflow there and every
    curve records to it (the tools' own tracking, unit by unit, through the runner)."""
    from moga_lab.cli.fit import build_parser as fit_parser
    from moga_lab.cli.interaction import build_parser as interaction_parser
    from moga_lab.studies.generate import ablation_study, write_study
    from moga_lab.studies.runner import load_study
    uri = f'sqlite:///{tmp_path}/mlflow.db'
    study = load_study(write_study(ablation_study({'full': {}, 'no_ca': {'channel_aggregation': False}}, seeds=[0],
                                                  tracking_uri=uri), str(tmp_path / 's.yaml')))
    fit = fit_parser().parse_args(study.unit('fit-no_ca-s0').command[1:])
    assert 'mlflow' in fit.logger and fit.tracking_uri == uri
    curves = interaction_parser().parse_args(study.unit('curves-no_ca-s0').command[1:])
    assert curves.tracking_uri == uri and not curves.no_tracking


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
