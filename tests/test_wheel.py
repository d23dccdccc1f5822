"""The built wheel, installed outside the checkout, gives every tool: each console script's --help, and a two-image
interaction and Grad-CAM on a checkpoint it trained itself, all run from another directory."""
import configparser
import os
import site
import subprocess
import sys
import sysconfig

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow  # builds and installs a wheel, then runs the tools as processes


def _console_scripts():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / 'setup.cfg')
    return [line.split('=')[0].strip() for line in cfg['options.entry_points']['console_scripts'].strip().splitlines()]


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """A fresh virtual environment holding the wheel. Its dependencies (torch, Lightning, timm, ...) are those of
    the environment running the tests, reached through a path file: installing torch again would add minutes and
    test pip, not the package. The test environment's own moga_lab is an editable install whose finder is a .pth
    hook, which a path file does not run, so `import moga_lab` can only find the wheel's copy."""
    tmp = tmp_path_factory.mktemp('wheel')
    dist, env = tmp / 'dist', tmp / 'env'
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(dist),
                    str(ROOT)], check=True, capture_output=True, timeout=600)
    wheel = next(dist.glob('moga_lab-*.whl'))
    subprocess.run([sys.executable, '-m', 'venv', str(env)], check=True, timeout=300)
    python = env / 'bin' / 'python'
    subprocess.run([str(python), '-m', 'pip', 'install', '-q', '--no-deps', '--no-index', str(wheel)], check=True,
                   capture_output=True, timeout=300)
    env_site = subprocess.run([str(python), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                              capture_output=True, text=True, check=True).stdout.strip()
    deps = [p for p in site.getsitepackages() + [sysconfig.get_paths()['purelib']] if os.path.isdir(p)]
    with open(os.path.join(env_site, 'test_dependencies.pth'), 'w') as f:
        f.write('\n'.join(dict.fromkeys(deps)) + '\n')
    work = tmp / 'elsewhere'
    work.mkdir()
    return env, work, wheel


def _run(env, work, args, timeout=600):
    clean = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV', 'MOGA_LAB_RUN_DIR')}
    clean['PATH'] = f"{env / 'bin'}{os.pathsep}{clean.get('PATH', '')}"
    return subprocess.run(args, cwd=work, env=clean, capture_output=True, text=True, timeout=timeout)


def test_the_wheel_holds_the_package_and_its_data(installed):
    env, work, wheel = installed
    import zipfile
    names = zipfile.ZipFile(wheel).namelist()
    assert 'moga_lab/studies/configs/ablation.yaml' in names and 'moga_lab/cli/study.py' in names
    assert not any(n.startswith(('tests/', 'docs/', 'benchmarks/')) for n in names)
    done = _run(env, work, [str(env / 'bin' / 'python'), '-c',
                            'import moga_lab, timm; print(moga_lab.__file__, moga_lab.__version__); '
                            "timm.create_model('moganet_xtiny')"])
    assert done.returncode == 0, done.stderr
    where, version = done.stdout.split()
    assert str(env) in where and str(ROOT) not in where and version == '1.0.0'


def test_every_console_script_answers_help(installed):
    env, work, _ = installed
    scripts = _console_scripts()
    assert {'moga-fit', 'moga-ablate', 'moga-compare', 'moga-study', 'moga-claims'} <= set(scripts)
    for name in scripts:
        done = _run(env, work, [str(env / 'bin' / name), '--help'], timeout=300)
        assert done.returncode == 0 and 'usage' in done.stdout.lower(), (name, done.stderr[-2000:])


def test_interaction_and_gradcam_on_a_checkpoint_it_trained(installed):
    env, work, _ = installed
    done = _run(env, work, [str(env / 'bin' / 'moga-fit'), '--variant', 'xtiny', '--data', 'synthetic',
                            '--batch-size', '8', '--epochs', '1', '--limit-train-batches', '2', '--no-progress',
                            '--run-dir', 'run'])
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = work / 'run' / 'best.ckpt'
    assert ckpt.is_file()
    done = _run(env, work, [str(env / 'bin' / 'moga-interaction'), '--checkpoint', str(ckpt), '--num-images', '2',
                            '--pairs', '2', '--contexts', '2', '--out', 'inter'])
    assert done.returncode == 0, done.stderr[-3000:]
    assert (work / 'inter' / 'interaction.csv').is_file()
    done = _run(env, work, [str(env / 'bin' / 'moga-gradcam'), '--checkpoint', str(ckpt), '--num-images', '2',
                            '--garment-threshold', '0.5', '--out', 'cam'])
    assert done.returncode == 0, done.stderr[-3000:]
    assert any(p.suffix == '.png' for p in (work / 'cam').iterdir())
    import pandas as pd
    shares = pd.read_csv(work / 'cam' / 'gradcam.csv')
    assert len(shares) == 2 and shares.cam_on_garment.between(0, 1).all() and shares.garment_area.between(0, 1).all()
