"""A weights file a user names never runs code unless they say they trust it (--trust-weights / trust=True).

Every loading path gets the same malicious file: a release-layout checkpoint whose ``args`` entry, when unpickled,
writes a marker file. It must be refused (one line that names the type and the opt-in) and the marker must not
exist; with the opt-in the marker appears, which shows the test would notice a path that unpickles silently."""
import argparse
import json
import warnings

import numpy as np
import pytest
import timm
import torch
from PIL import Image

import moga_lab  # noqa: F401
from moga_lab.cli import export as export_cli
from moga_lab.cli import gradcam as gradcam_cli
from moga_lab.cli import interaction as interaction_cli
from moga_lab.cli import validate as validate_cli
from moga_lab.loaders import load_classifier, load_models, load_pretrained
from moga_lab.models import (CheckpointMismatchError, UntrustedCheckpointError, create_classifier, load_checkpoint,
                             read_weights, torch_load)

MARKER = 'MOGA_LAB_TEST_MARKER'
TINY = ['--grid', '2', '--pairs', '1', '--contexts', '2', '--ratios', '0,1', '--no-progress']


class Payload:
    """Unpickling this calls open(path, 'w'): the stand-in for any code a hostile file could run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, 'w'))


def _fit_payload(state):
    hp = dict(config=dict(model=dict(name='moganet_xtiny'), data=dict(name='synthetic')), num_classes=4, in_chans=1,
              image_size=32, mean=[0.5], std=[0.25], class_names=['a', 'b', 'c', 'd'])
    return {'state_dict': {f'model.{k}': v for k, v in state.items()}, 'hyper_parameters': hp, 'epoch': 1}


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('security')
    torch.manual_seed(0)
    xt = timm.create_model('moganet_xtiny', num_classes=3).eval()
    small = create_classifier('moganet_xtiny', num_classes=4, in_chans=1, image_size=32).eval()
    # a real release layout: timm's trainer saves its Namespace and, in older versions, numpy scalars
    torch.save({'state_dict': xt.state_dict(), 'epoch': 299, 'arch': 'moganet_xtiny', 'metric': np.float64(76.5),
                'args': argparse.Namespace(model='moganet_xtiny', lr=1e-3, epochs=np.int64(300))}, d / 'release.pth.tar')
    fit = _fit_payload(small.state_dict())
    torch.save(fit, d / 'fit.ckpt')
    rng = np.random.default_rng(0)
    for k in range(3):
        (d / 'folder' / f'class{k}').mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(d / 'folder' / f'class{k}' / 'a.png')
    return dict(dir=d, xt=xt, small=small)


def _evil(files, tmp_path, fit=False):
    marker = tmp_path / 'ran'
    if fit:
        obj = _fit_payload(files['small'].state_dict())
        obj['hyper_parameters']['extra'] = Payload(marker)
    else:
        obj = {'state_dict': files['xt'].state_dict(), 'args': Payload(marker)}
    path = tmp_path / ('evil.ckpt' if fit else 'evil.pth.tar')
    torch.save(obj, path)
    return path, marker


def _refused(error_text):
    assert 'io.open' in error_text and '--trust-weights' in error_text and 'trust=True' in error_text
    assert '\n' not in error_text.strip()


API_PATHS = {
    'torch_load': lambda p, trust: torch_load(p, trust=trust),
    'read_weights': lambda p, trust: read_weights(p, trust=trust),
    'load_checkpoint': lambda p, trust: load_checkpoint(timm.create_model('moganet_xtiny', num_classes=3), p,
                                                        trust=trust),
    'load_pretrained': lambda p, trust: load_pretrained('moganet_xtiny', str(p), trust=trust),
    'load_models': lambda p, trust: load_models([('model', 'moganet_xtiny', str(p))], trust=trust),
}


@pytest.mark.parametrize('name', sorted(API_PATHS))
def test_api_refuses_a_pickled_payload_and_runs_it_only_when_trusted(files, tmp_path, name):
    path, marker = _evil(files, tmp_path)
    with pytest.raises(UntrustedCheckpointError) as info:
        API_PATHS[name](path, False)
    _refused(str(info.value))
    assert not marker.exists()
    with pytest.warns(UserWarning, match='full unpickling'):
        API_PATHS[name](path, True)
    assert marker.exists()


def test_fit_checkpoint_api_refuses_a_payload_in_hyper_parameters(files, tmp_path):
    path, marker = _evil(files, tmp_path, fit=True)
    with pytest.raises(UntrustedCheckpointError):
        load_classifier(str(path))
    assert not marker.exists()
    with pytest.warns(UserWarning, match='full unpickling'):
        load_classifier(str(path), trust=True)
    assert marker.exists()


def _cli_args(files, path, command, fit):
    source = ['--checkpoint', str(path)] if fit else ['--model', 'moganet_xtiny', '--weights', str(path)]
    data = ['--data-dir', str(files['dir'] / 'folder')]
    if command is validate_cli:
        return source + data + ['--num-workers', '0'] + (['--variant', 'xtiny'] if fit else [])
    out = ['--out', str(path.parent / 'out'), '--num-images', '1']
    if fit:
        data = ['--data', 'synthetic']
    return source + data + out + (TINY if command is interaction_cli else [])


@pytest.mark.parametrize('fit', [False, True], ids=['--weights', '--checkpoint'])
@pytest.mark.parametrize('command', [interaction_cli, gradcam_cli, validate_cli],
                         ids=['interaction', 'gradcam', 'validate'])
def test_clis_refuse_the_payload_in_one_line_and_run_it_only_with_trust_weights(files, tmp_path, capsys, command,
                                                                                fit):
    path, marker = _evil(files, tmp_path, fit)
    with pytest.raises(SystemExit) as info:
        command.main(_cli_args(files, path, command, fit))
    assert info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if 'error:' in line]
    assert len(errors) == 1, errors
    _refused(errors[0].split('error: ', 1)[1])
    assert not marker.exists()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        try:
            command.main(_cli_args(files, path, command, fit) + ['--trust-weights'])
        except (SystemExit, Exception):  # noqa: B014 - the trusted stand-in file need not be a usable model;
            pass                           # what matters is that it was unpickled
    assert marker.exists()


def test_study_tool_refuses_the_payload(files, tmp_path):
    """The comparison tool takes no weight files any more: it refuses before anything is read."""
    from tests.conftest import run_script
    path, marker = _evil(files, tmp_path)
    done = run_script('analysis/compare_models.py', ['--model', 'moganet_xtiny', '--weights', str(path),
                                                     '--study', str(tmp_path / 's.yaml')], cwd=tmp_path, timeout=600)
    assert done.returncode == 2 and 'moga-interaction' in done.stderr, done.stderr[-2000:]
    assert not marker.exists() and not (tmp_path / 's.yaml').exists()


def test_timm_pretrained_with_a_file_overlay_never_runs_the_payload(files, tmp_path):
    path, marker = _evil(files, tmp_path)
    for extra in ({}, dict(custom_load=True)):  # timm's own loader, and MogaNet.load_pretrained
        with pytest.raises(Exception):
            timm.create_model('moganet_xtiny', num_classes=3, pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(path), **extra))
    assert not marker.exists()


def test_real_release_layout_loads_without_trust(files):
    """What real files hold (timm's Namespace, numpy scalars) is allowed; nothing warns."""
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        m = load_pretrained('moganet_xtiny', str(files['dir'] / 'release.pth.tar'))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(m.model(x), files['xt'](x), rtol=0, atol=0)
    raw = torch_load(files['dir'] / 'release.pth.tar')
    assert float(raw['metric']) == 76.5 and raw['args'].epochs == 300


def test_safetensors_export_and_load_everywhere(files, tmp_path, capsys):
    x = torch.randn(1, 3, 64, 64)
    # a release file -> flat weights, checked against the model before writing
    out = tmp_path / 'xt.safetensors'
    assert export_cli.main([str(files['dir'] / 'release.pth.tar'), '--to', str(out), '--model', 'moganet_xtiny']) == 0
    assert 'wrote' in capsys.readouterr().out
    m = load_pretrained('moganet_xtiny', str(out))
    with torch.no_grad():
        torch.testing.assert_close(m.model(x), files['xt'](x), rtol=0, atol=0)
    model = timm.create_model('moganet_xtiny', num_classes=3)
    load_checkpoint(model, out)
    via_timm = timm.create_model('moganet_xtiny', num_classes=3, pretrained=True,
                                 pretrained_cfg_overlay=dict(file=str(out)))
    with torch.no_grad():  # timm drops a classifier whose size differs from its config's 1000: the trunks agree
        torch.testing.assert_close(via_timm.eval().forward_features(x), files['xt'].forward_features(x), rtol=0, atol=0)
    # a fit checkpoint -> weights plus the run's hyper-parameters: --checkpoint model.safetensors works
    fit_out = tmp_path / 'fit.safetensors'
    assert export_cli.main([str(files['dir'] / 'fit.ckpt'), '--to', str(fit_out)]) == 0
    from safetensors import safe_open
    with safe_open(str(fit_out), framework='pt') as f:
        assert json.loads(f.metadata()['moga_lab.hyper_parameters'])['num_classes'] == 4
    a, b = load_classifier(str(files['dir'] / 'fit.ckpt')), load_classifier(str(fit_out))
    y = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(a.model(y), b.model(y), rtol=0, atol=0)
    assert b.class_names == ('a', 'b', 'c', 'd')
    # an untrusted file is not exported either, and a bad target name is refused in one line
    path, marker = _evil(files, tmp_path)
    for argv in ([str(path), '--to', str(tmp_path / 'e.safetensors')], [str(out), '--to', str(tmp_path / 'e.pth')]):
        with pytest.raises(SystemExit) as info:
            export_cli.main(argv)
        assert info.value.code == 2
    assert not marker.exists() and not (tmp_path / 'e.safetensors').exists()
    corrupt = tmp_path / 'bad.safetensors'
    corrupt.write_bytes(b'nonsense')
    with pytest.raises(CheckpointMismatchError, match='cannot read'):
        read_weights(corrupt)
