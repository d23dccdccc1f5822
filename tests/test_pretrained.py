"""Released / timm weights at 224 px through every analysis command: `--model NAME --weights FILE`, ImageFolder data,
one eval transform for all models, `pretrained=True` downloading the official-format file from a local HTTP server."""
import argparse
import functools
import http.server
import os
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from PIL import Image

import moga_lab  # noqa: F401
from moga_lab.cli import gradcam as gradcam_cli
from moga_lab.cli import interaction as interaction_cli
from moga_lab.cli import validate as validate_cli
from moga_lab.loaders import PAPER_TRANSFORM, load_eval_images, load_models, load_pretrained
from moga_lab.models.moganet import RELEASE_URL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
XT_FILE = 'moganet_xtiny_sz224_8xbs128_ep300.pth.tar'
SYNSETS = ('n01440764', 'n01443537', 'n01484850')  # ImageNet classes 0, 1, 2
# interaction budget for tests: the pipeline end to end, not a measurement
TINY = ['--grid', '4', '--pairs', '2', '--contexts', '2', '--ratios', '0,0.5,1', '--no-progress']


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('pretrained')
    torch.manual_seed(0)
    xt = timm.create_model('moganet_xtiny').eval()
    # the authors' release layout: timm's trainer keeps its argparse.Namespace beside the weights
    torch.save({'state_dict': xt.state_dict(), 'epoch': 299, 'arch': 'moganet_xtiny',
                'args': argparse.Namespace(model='moganet_xtiny', lr=1e-3)}, d / XT_FILE)
    atto = timm.create_model('convnext_atto').eval()
    torch.save(atto.state_dict(), d / 'convnext_atto.pth')  # timm layout
    rng = np.random.default_rng(0)
    for k, syn in enumerate(SYNSETS):
        (d / 'inet' / 'val' / syn).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 255, size=(260 + 10 * i, 300, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(d / 'inet' / 'val' / syn / f'img{i}.JPEG')
    return dict(dir=d, xt=xt, atto=atto)


def _pair(files, *names):
    args = []
    for name in names:
        args += ['--model', name, '--weights', str(files['dir'] / (XT_FILE if name == 'moganet_xtiny' else f'{name}.pth'))]
    return args


# ---- pretrained=True ------------------------------------------------------------------------------

def test_pretrained_cfgs_name_the_official_release_files():
    base = 'https://github.com/Westlake-AI/MogaNet/releases/download/moganet-in1k-weights/'
    assert RELEASE_URL == base
    expected = {
        'moganet_xtiny.in1k': 'moganet_xtiny_sz224_8xbs128_ep300.pth.tar',
        'moganet_xtiny.in1k_256': 'moganet_xtiny_sz256_8xbs128_ep300.pth.tar',
        'moganet_tiny.in1k': 'moganet_tiny_sz224_8xbs128_ep300.pth.tar',
        'moganet_tiny.in1k_256': 'moganet_tiny_sz256_8xbs128_ep300.pth.tar',
        'moganet_small.in1k': 'moganet_small_sz224_8xbs128_ep300.pth.tar',
        'moganet_base.in1k': 'moganet_base_sz224_8xbs128_ep300.pth.tar',
        'moganet_large.in1k': 'moganet_large_sz224_8xbs64_ep300.pth.tar',
        'moganet_xlarge.in1k': 'moganet_xlarge_sz224_8xbs64_ep300.pth.tar',
    }
    assert sorted(timm.list_pretrained('moganet*')) == sorted(expected)
    for tag, file in expected.items():
        cfg = timm.models.get_pretrained_cfg(tag)
        assert cfg.url == base + file and cfg.custom_load
        assert cfg.input_size[-1] == (256 if tag.endswith('256') else 224)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(files):
    handler = functools.partial(_Quiet, directory=str(files['dir']))
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}/'
    httpd.shutdown()
    httpd.server_close()


def test_pretrained_true_downloads_the_official_format(files, server, tmp_path, monkeypatch):
    """The download path end to end: timm fetches the release file (here from a local server standing in for GitHub)
    into its cache and MogaNet.load_pretrained reads the authors' {'state_dict', 'args': Namespace} layout."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    # the registered config with only the host swapped (timm resets custom_load when an overlay names a source)
    overlay = dict(url=server + XT_FILE, custom_load=True)
    model = timm.create_model('moganet_xtiny', pretrained=True, pretrained_cfg_overlay=overlay).eval()
    cached = tmp_path / 'torch' / 'hub' / 'checkpoints' / XT_FILE
    assert cached.is_file()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), files['xt'](x), rtol=0, atol=0)
    assert model.pretrained_source.startswith('state_dict of ')
    # another head size: the classifier is dropped, the backbone kept (timm's behaviour for pretrained=True)
    with pytest.warns(UserWarning, match='classifier of another size'):
        ten = timm.create_model('moganet_xtiny', pretrained=True, pretrained_cfg_overlay=overlay, num_classes=10)
    with torch.no_grad():
        torch.testing.assert_close(ten.eval().forward_features(x), files['xt'].forward_features(x))
    # offline, a local file still works through the overlay, by timm's own loader (custom_load reset) or ours
    for extra in ({}, dict(custom_load=True)):
        local = timm.create_model('moganet_xtiny', pretrained=True,
                                  pretrained_cfg_overlay=dict(file=str(files['dir'] / XT_FILE), **extra)).eval()
        with torch.no_grad():
            torch.testing.assert_close(local(x), files['xt'](x), rtol=0, atol=0)


def test_ema_weights_are_used_when_present_and_said(files, tmp_path):
    torch.manual_seed(1)
    ema = timm.create_model('moganet_xtiny').eval()
    path = tmp_path / 'with_ema.pth.tar'
    torch.save({'state_dict': files['xt'].state_dict(), 'state_dict_ema': ema.state_dict()}, path)
    x = torch.randn(1, 3, 224, 224)
    m = load_pretrained('moganet_xtiny', str(path))
    assert m.source.startswith('state_dict_ema of')
    raw = load_pretrained('moganet_xtiny', str(path), use_ema=False)
    assert raw.source.startswith('state_dict of')
    with torch.no_grad():
        torch.testing.assert_close(m.model(x), ema(x), rtol=0, atol=0)
        torch.testing.assert_close(raw.model(x), files['xt'](x), rtol=0, atol=0)
    for extra in ({}, dict(custom_load=True)):  # timm's pretrained=True follows the same rule, either loader
        via_timm = timm.create_model('moganet_xtiny', pretrained=True,
                                     pretrained_cfg_overlay=dict(file=str(path), **extra)).eval()
        with torch.no_grad():
            torch.testing.assert_close(via_timm(x), ema(x), rtol=0, atol=0)


# ---- loading: transforms, classes, selection --------------------------------------------------------

def test_models_share_one_transform_and_imagenet_synsets_give_class_indices(files):
    models = load_models([('model', 'moganet_xtiny', str(files['dir'] / XT_FILE)),
                          ('model', 'convnext_atto', str(files['dir'] / 'convnext_atto.pth'))])
    # each model's own pretrained config differs (crop 0.9 bicubic vs 0.875 bicubic) ...
    assert models[0].data_config['crop_pct'] == 0.9 and models[1].data_config['crop_pct'] == 0.875
    ev = load_eval_images(models, 3, data_dir=str(files['dir'] / 'inet'), per_class=True, seed=3)
    # ... so several models get the authors' shared transform: resize 256 (bilinear) -> crop 224
    assert ev.info.transform.startswith('resize 256 (bilinear) -> centre crop 224')
    assert ev.images.shape == (3, 3, 224, 224)
    assert sorted(ev.labels.tolist()) == [0, 1, 2]  # one per class, labels = ImageNet indices of the synsets
    for path, label in zip(ev.paths, ev.labels.tolist()):
        assert os.path.basename(os.path.dirname(path)) == SYNSETS[label]
    assert ev.info.class_names[0].startswith('tench')
    # the pixels are the shared transform's, whatever the model: identical to timm's create_transform of it
    from timm.data import create_transform
    from moga_lab.data.imagefolder import load_rgb
    expected = create_transform(**PAPER_TRANSFORM, is_training=False)(load_rgb(ev.paths[0]))
    torch.testing.assert_close(ev.images[0], expected)
    again = load_eval_images(models, 3, data_dir=str(files['dir'] / 'inet'), per_class=True, seed=3)
    assert again.ids == ev.ids and torch.equal(again.images, ev.images)
    other = load_eval_images(models, 3, data_dir=str(files['dir'] / 'inet'), per_class=True, seed=4)
    assert other.ids != ev.ids
    one = load_eval_images(models[:1], 2, data_dir=str(files['dir'] / 'inet'))
    assert one.info.transform.startswith('resize 248 (bicubic) -> centre crop 224')  # its own config: 224 / 0.9


def test_pixel_mean_of_released_weights_is_the_folders_mean_image(files):
    """An ImageFolder has no training split: the pixel-mean baseline is the mean over the folder's images, as the
    models see them, and a study computing interactions of released weights uses it."""
    from moga_lab.analysis.estimate import InteractionSettings
    from moga_lab.loaders import eval_dataset, pixel_mean_image
    from moga_lab.studies.model_curves import interaction_of_models
    models = load_models([('model', 'moganet_xtiny', str(files['dir'] / XT_FILE))])
    folder = str(files['dir'] / 'inet')
    mean = pixel_mean_image(models, data_dir=folder)
    ds, _ = eval_dataset(models, folder, 'auto')
    expected = torch.stack([ds[k][0] for k in range(len(ds))]).double().mean(0).float()
    torch.testing.assert_close(mean, expected)
    ev = load_eval_images(models, 1, data_dir=folder)
    settings = InteractionSettings(grid=4, num_pairs=2, num_contexts=2, ratios=(0.0, 0.5, 1.0), baseline='pixel-mean')
    frame = interaction_of_models(models, ev.images, ev.labels, ev.ids, settings, progress=False, data_dir=folder)
    assert set(frame.baseline) == {'pixel-mean'} and len(frame) == 3


# ---- the commands ---------------------------------------------------------------------------------

def test_interaction_cli_on_released_weights_at_224(files, tmp_path, capsys):
    out = tmp_path / 'inter'
    assert interaction_cli.main(_pair(files, 'moganet_xtiny', 'convnext_atto') + [
        '--data', 'imagefolder', '--data-dir', str(files['dir'] / 'inet'), '--num-images', '2', '--one-per-class',
        '--out', str(out), '--target-ci', '0.5', '--max-forwards', '120'] + TINY) == 0
    captured = capsys.readouterr()
    assert 'resize 256 (bilinear) -> centre crop 224' in captured.err and 'state_dict of' in captured.err
    frame = pd.read_csv(out / 'interaction.csv')
    assert set(frame.model) == {'moganet_xtiny', 'convnext_atto'}
    assert frame.groupby('model').image_id.nunique().tolist() == [2, 2]
    assert (frame.n_players == 16).all() and (frame.forwards <= 120).all()
    images = pd.read_csv(out / 'images.csv')
    assert len(images) == 2 and images.path.str.contains('/inet/val/n0').all()
    assert (out / 'interaction_curves.png').stat().st_size > 10_000


def test_gradcam_and_validate_cli_on_released_weights(files, tmp_path, capsys):
    out = tmp_path / 'cam'
    assert gradcam_cli.main(_pair(files, 'moganet_xtiny', 'convnext_atto') + [
        '--data-dir', str(files['dir'] / 'inet'), '--num-images', '2', '--out', str(out)]) == 0
    saved = np.load(out / 'gradcam_maps.npz')
    assert saved['maps'].shape == (2, 2, 224, 224) and np.isfinite(saved['maps']).all()
    assert list(saved['models']) == ['moganet_xtiny', 'convnext_atto']
    capsys.readouterr()
    assert validate_cli.main(_pair(files, 'moganet_xtiny', 'convnext_atto') + [
        '--data-dir', str(files['dir'] / 'inet'), '--num-workers', '0']) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all('(6 images;' in line for line in lines)
    assert 'resize 248 (bicubic)' in lines[0] and 'resize 256 (bicubic)' in lines[1]  # each model its own config


def test_compare_points_released_weights_to_the_analysis_commands(capsys):
    """Released weights are compared by the analysis commands above (each takes several --model/--weights);
    moga-compare writes study files of trained models and names them in one line."""
    from moga_lab.cli import compare
    with pytest.raises(SystemExit) as stop:
        compare.main(['--model', 'moganet_xtiny', '--weights', 'x.pth', '--study', 'never.yaml'])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.strip().splitlines()) == 1
    assert 'moga-validate, moga-interaction and moga-gradcam take --model/--weights' in err
    assert not os.path.exists('never.yaml')


@pytest.mark.slow  # a subprocess
def test_analysis_commands_do_not_import_training(files, tmp_path):
    code = ('import sys; from moga_lab.cli import interaction; interaction.main(sys.argv[1:]); '
            'bad = sorted(m for m in sys.modules if m.startswith("moga_lab.training")); assert not bad, bad')
    done = subprocess.run([sys.executable, '-c', code] + _pair(files, 'moganet_xtiny') + [
        '--data-dir', str(files['dir'] / 'inet'), '--num-images', '1', '--out', str(tmp_path / 'o')] + TINY,
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


# ---- bad input: one line, exit 2, nothing written ----------------------------------------------------

def _bad_inputs(files, tmp_path):
    d = files['dir']
    (tmp_path / 'empty' / 'n01440764').mkdir(parents=True)
    for c in ('cat', 'dog', 'fox'):
        (tmp_path / 'three' / c).mkdir(parents=True)
        Image.new('RGB', (64, 64)).save(tmp_path / 'three' / c / '0.png')
    (tmp_path / 'corrupt' / 'n01440764').mkdir(parents=True)
    (tmp_path / 'corrupt' / 'n01440764' / 'broken.JPEG').write_bytes(b'\xff\xd8\xff not a jpeg')
    (tmp_path / 'garbage.pth').write_bytes(b'this is not a checkpoint')
    inet = str(d / 'inet')
    return {
        'weights of another architecture': (
            _pair(files, 'moganet_xtiny')[:1] + ['convnext_atto', '--weights', str(d / XT_FILE), '--data-dir', inet],
            'looks like moganet_xtiny weights'),
        'another MogaNet size': (['--model', 'moganet_tiny', '--weights', str(d / XT_FILE), '--data-dir', inet],
                                 'moganet_xtiny'),
        'folder with no images': (_pair(files, 'moganet_xtiny') + ['--data-dir', str(tmp_path / 'empty')], 'no images'),
        'class-count mismatch': (_pair(files, 'moganet_xtiny') + ['--data-dir', str(tmp_path / 'three')],
                                 '3 class folders but moganet_xtiny classifies 1000'),
        'corrupt weights file': (['--model', 'moganet_xtiny', '--weights', str(tmp_path / 'garbage.pth'), '--data-dir',
                                  inet], 'cannot read checkpoint'),
        'corrupt image': (_pair(files, 'moganet_xtiny') + ['--data-dir', str(tmp_path / 'corrupt')], 'corrupt'),
        'unknown model': (['--model', 'moganet_huge', '--weights', str(d / XT_FILE), '--data-dir', inet],
                          "unknown --model 'moganet_huge'"),
        'model without weights': (['--model', 'moganet_xtiny', '--data-dir', inet], '1 --model for 0 --weights'),
        'missing data folder': (_pair(files, 'moganet_xtiny') + ['--data-dir', str(tmp_path / 'nowhere')],
                                'is not a folder'),
    }


@pytest.mark.parametrize('cli', ['interaction', 'gradcam'])
def test_bad_input_is_one_line_and_writes_nothing(files, tmp_path, capsys, cli):
    main = interaction_cli.main if cli == 'interaction' else gradcam_cli.main
    for case, (argv, expected) in _bad_inputs(files, tmp_path).items():
        out = tmp_path / f'out-{cli}'
        with pytest.raises(SystemExit) as info:
            main(argv + ['--num-images', '1', '--out', str(out)] + (TINY if cli == 'interaction' else []))
        err = capsys.readouterr().err.strip()
        assert info.value.code == 2, case
        assert expected in err, (case, err)
        assert len(err.splitlines()) == 1 and 'Traceback' not in err, (case, err)
        assert not out.exists(), case
