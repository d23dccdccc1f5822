"""Test-wide settings and helpers."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(script, args, cwd, timeout=900):
    """A repository script (e.g. experiments/ablate.py) in a fresh process, as a user runs it."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop('MOGA_LAB_RUN_DIR', None)
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope='session', autouse=True)
def _study_store(tmp_path_factory):
    """Study commands record into MLflow's store by default (runs/mlflow.db in the working directory): during the
    tests, one throw-away store for the whole run instead (tests that check the store name their own)."""
    path = tmp_path_factory.mktemp('mlflow') / 'mlflow.db'
    old = os.environ.get('MLFLOW_TRACKING_URI')
    os.environ['MLFLOW_TRACKING_URI'] = f'sqlite:///{path}'
    yield
    if old is None:
        os.environ.pop('MLFLOW_TRACKING_URI', None)
    else:
        os.environ['MLFLOW_TRACKING_URI'] = old


def load_script(path):
    """A repository script (e.g. analysis/convergence.py) as a module, to call its main(argv) in this process: the
    cheap scripts are tested without paying a fresh interpreter's torch import per case."""
    import importlib.util as iu
    name = 'script_' + str(path).replace('/', '_').replace('.py', '')
    spec = iu.spec_from_file_location(name, ROOT / path)
    module = iu.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
