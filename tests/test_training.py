"""Training: the LightningModule's recipe pieces, the fit/validate front doors, resume after SIGKILL, DDP."""
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from moga_lab.cli import fit as fit_cli
from moga_lab.cli import validate as validate_cli
from moga_lab.data import SyntheticDataModule
from moga_lab.training import ImageClassifier, NonFiniteLossError, RunConfig, paper_recipe, small_data_recipe

pytestmark = pytest.mark.slow  # trains, or runs commands end to end: `make test-fast` leaves it out

ROOT = Path(__file__).resolve().parents[1]
# a small, learnable problem: 4 classes of 16x16 grey patterns, 256 training images
SYN = ['--variant', 'xtiny', '--data', 'synthetic', '--batch-size', '16', '--no-progress']


def _run_cli(args, cwd, timeout=300, env_extra=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env_extra or {}))
    env.pop('MOGA_LAB_RUN_DIR', None)
    return subprocess.run([sys.executable, '-m', *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _module(**optim):
    cfg = small_data_recipe('xtiny')
    for k, v in optim.items():
        setattr(cfg.optim, k, v)
    return ImageClassifier(cfg.to_dict(), num_classes=4, in_chans=1, image_size=16)


def test_image_classifier_takes_the_typed_config_or_its_dict_and_saves_a_plain_dict():
    from moga_lab.training.config import ConfigError
    cfg = small_data_recipe('xtiny')
    typed = ImageClassifier(cfg, num_classes=4, in_chans=1, image_size=16)
    plain = _module()
    assert typed.hparams['config'] == plain.hparams['config'] == cfg.to_dict()
    assert isinstance(typed.hparams['config'], dict) and typed.cfg == cfg
    bad = cfg.to_dict()
    bad['optim']['learning_rate'] = 1.0
    with pytest.raises(ConfigError, match=r"config section 'optim': unknown keys \['learning_rate'\]"):
        ImageClassifier(bad, num_classes=4, in_chans=1, image_size=16)


def test_fit_end_to_end_writes_the_run_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('MOGA_LAB_RUN_DIR', raising=False)
    assert fit_cli.main(SYN + ['--epochs', '3', '--lr', '3e-3']) == 0
    out = capsys.readouterr().out
    run = tmp_path / 'runs' / 'moganet_xtiny-synthetic'
    assert 'test top-1' in out and str(run) in out
    for name in ('last.ckpt', 'best.ckpt', 'config.yaml', 'metrics.csv', 'learning_curve.png', 'results.yaml'):
        assert (run / name).is_file(), name
    cfg = RunConfig.from_dict(yaml.safe_load((run / 'config.yaml').read_text()))
    assert cfg.model.name == 'moganet_xtiny' and cfg.trainer.epochs == 3 and cfg.optim.lr == 3e-3
    metrics = pd.read_csv(run / 'metrics.csv')
    assert metrics['val/acc1'].dropna().size == 6  # twice per epoch (the small-data preset)
    results = yaml.safe_load((run / 'results.yaml').read_text())
    assert results['global_step'] == 3 * (224 // 16)
    # wall time = training loop + test (Lightning's Timer): within this process's wall time, minus its set-up
    assert results['segments'] == 1 and 0 < results['wall_seconds'] <= results['last_segment_wall_seconds']
    assert results['test/acc1'] > 0.5  # chance is 0.25
    assert (run / 'learning_curve.png').stat().st_size > 20_000
    # a second run does not overwrite the first
    monkeypatch.delenv('MOGA_LAB_RUN_DIR', raising=False)
    assert fit_cli.main(SYN + ['--epochs', '1', '--limit-train-batches', '2']) == 0
    assert (tmp_path / 'runs' / 'moganet_xtiny-synthetic-2' / 'last.ckpt').is_file()


@pytest.mark.parametrize('model', ['convnext_atto', 'swin_femto'])
def test_baselines_train_through_the_same_module(tmp_path, monkeypatch, model):
    monkeypatch.delenv('MOGA_LAB_RUN_DIR', raising=False)
    args = ['--model', model, '--data', 'synthetic', '--batch-size', '8', '--epochs', '1', '--limit-train-batches',
            '3', '--no-progress', '--run-dir', str(tmp_path / model)]
    assert fit_cli.main(args) == 0
    assert (tmp_path / model / 'best.ckpt').is_file()


def test_optimizer_excludes_norms_biases_and_scales_from_weight_decay():
    module = _module(weight_decay=0.05)
    module.trainer = type('T', (), {'estimated_stepping_batches': 100, 'max_epochs': 2})()
    opt = module.configure_optimizers()['optimizer']
    names = {id(p): n for n, p in module.model.named_parameters()}
    decayed = {names[id(p)] for g in opt.param_groups if g['weight_decay'] > 0 for p in g['params']}
    assert decayed and all(n.endswith('weight') for n in decayed)
    assert not any('layer_scale' in n or 'sigma' in n or 'norm' in n or n.endswith('bias') for n in decayed)
    assert 'blocks1.0.attn.proj_1.weight' in decayed
    assert isinstance(opt, torch.optim.AdamW)


def test_schedule_is_linear_warmup_then_cosine():
    module = _module(lr=1e-3, warmup_epochs=1, warmup_lr=0.0, min_lr=0.0)
    module.trainer = type('T', (), {'estimated_stepping_batches': 100, 'max_epochs': 4})()
    conf = module.configure_optimizers()
    opt, sched = conf['optimizer'], conf['lr_scheduler']['scheduler']
    lrs = []
    for step in (0, 10, 25, 50, 75, 100):
        sched.step_update(num_updates=step)
        lrs.append(opt.param_groups[0]['lr'])
    assert lrs[0] == pytest.approx(0.0, abs=1e-9)
    assert lrs[1] == pytest.approx(1e-3 * 10 / 25, rel=1e-6)       # linear warmup over 25 steps
    # then timm's cosine over the whole run (DeiT/MogaNet convention: the warmup is not a prefix)
    for step, lr in zip((25, 50, 75), lrs[2:5]):
        assert lr == pytest.approx(0.5 * 1e-3 * (1 + math.cos(math.pi * step / 100)), rel=1e-6)
    assert lrs[5] < 1e-9


def test_mixup_cutmix_ema_and_clipping_run(tmp_path, monkeypatch):
    monkeypatch.delenv('MOGA_LAB_RUN_DIR', raising=False)
    args = SYN + ['--epochs', '1', '--limit-train-batches', '4', '--mixup', '0.8', '--cutmix', '1.0', '--ema', '0.9',
                  '--grad-clip', '1.0', '--run-dir', str(tmp_path / 'r')]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert fit_cli.main(args) == 0
    # the EMA copy is in eval mode by design: Lightning's "modules in eval mode" warning is not shown for it
    assert not [w for w in caught if 'in eval mode at the start of training' in str(w.message)]
    # 4 steps per epoch against the default logging interval of 20: the interval is lowered, every step is logged
    assert not [w for w in caught if 'smaller than the logging interval' in str(w.message)]
    metrics = pd.read_csv(tmp_path / 'r' / 'metrics.csv')
    assert metrics['train/loss_step'].notna().sum() >= 1
    assert metrics['val_ema/acc1'].notna().any()
    ckpt = torch.load(tmp_path / 'r' / 'last.ckpt', map_location='cpu', weights_only=True)
    assert any(k.startswith('ema.module.') for k in ckpt['state_dict'])


def test_nan_loss_is_a_clear_error():
    import lightning as L
    class Broken(torch.nn.Module):
        def forward(self, logits, y):
            return logits.sum() * float('nan')

    module = _module()
    module.train_criterion = Broken()
    trainer = L.Trainer(fast_dev_run=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(NonFiniteLossError, match=r'training loss is nan at step 0 .*lower --lr'):
        trainer.fit(module, datamodule=SyntheticDataModule(batch_size=8))


def test_paper_recipe_presets():
    xt, s = paper_recipe('xt'), paper_recipe('small')
    assert (xt.optim.weight_decay, xt.model.drop_path_rate, xt.optim.mixup, xt.optim.cutmix) == (0.03, 0.05, 0.1, 1.0)
    assert (s.optim.weight_decay, s.optim.mixup, s.optim.ema_decay) == (0.05, 0.8, 0.9999)
    assert paper_recipe('xl').model.drop_path_rate == 0.4 and paper_recipe('tiny').optim.weight_decay == 0.04
    assert (xt.optim.lr, xt.trainer.epochs, xt.optim.warmup_epochs, xt.optim.label_smoothing, xt.data.reprob) == \
        (1e-3, 300, 5, 0.1, 0.25)
    assert xt.data.auto_augment.startswith('rand-m7') and s.data.auto_augment.startswith('rand-m9')


@pytest.mark.parametrize('args,needle', [
    (['--variant', 'huge'], "argument --variant: 'huge' is not accepted; accepted: xtiny, tiny"),
    (['--precision', 'fp8'], "'fp8' is not accepted; accepted: 32-true"),
    (['--dilations', '1,2'], "'1,2' is not three integers"),
    (['--gate-act', 'tanh'], "'tanh' is not accepted; accepted: gelu, identity, sigmoid, silu"),
    (['--model', 'resnet50'], "unknown model 'resnet50'; accepted: moganet_"),
    (['--data-dir', '/nonexistent/fm'], '/nonexistent/fm does not exist: install'),
    (['--strategy', 'magic'], "trainer.strategy='magic' (--strategy) is not accepted; accepted: auto, ddp"),
    (['--epochs', '0'], 'trainer.epochs=0 (--epochs) must be >= 1'),
    (['--image-size', '0'], "argument --image-size: '0' is not accepted; accepted: an integer >= 16"),
    (['--channel-split', '0:0:0'], 'channel_split=(0, 0, 0) is not valid'),
    (['--config', '/nonexistent.yaml'], "config file '/nonexistent.yaml' does not exist"),
])
def test_fit_argument_errors_exit_2_with_one_line(tmp_path, monkeypatch, capsys, args, needle):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('MOGA_LAB_RUN_DIR', raising=False)
    with pytest.raises(SystemExit) as info:
        fit_cli.main(args)
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2
    assert len(err.splitlines()) == 1 and needle in err, err


@pytest.mark.parametrize('section,field,value,needle', [
    ('trainer', 'epochs', 0, 'trainer.epochs=0 (--epochs) must be >= 1'),
    ('optim', 'lr', -1.0, 'optim.lr=-1.0 (--lr) must be > 0'),
    ('model', 'drop_path_rate', 1.5, 'model.drop_path_rate=1.5 (--drop-path) must be in [0, 1)'),
    ('trainer', 'strategy', 'magic', "trainer.strategy='magic' (--strategy) is not accepted; accepted: auto"),
])
def test_a_config_built_in_python_is_checked_as_the_flags_are(tmp_path, section, field, value, needle):
    """fit(cfg) and prepare(cfg) refuse what moga-fit refuses, before any data is read or any network built."""
    from moga_lab.training import fit
    from moga_lab.training.config import ConfigError, small_data_recipe
    cfg = small_data_recipe('xtiny')
    cfg.data.name, cfg.data.data_dir, cfg.trainer.run_dir = 'fashion-mnist', str(tmp_path / 'no-data-here'), str(tmp_path)
    setattr(getattr(cfg, section), field, value)
    with pytest.raises(ConfigError) as info:
        fit(cfg)
    assert needle in str(info.value)
    assert small_data_recipe('xtiny').validate().trainer.epochs >= 1  # a recipe passes as it is


def test_fit_cli_subprocess_bad_variant(tmp_path):
    proc = _run_cli(['moga_lab.cli.fit', '--variant', 'huge'], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "'huge'" in proc.stderr


def test_config_file_and_flags_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv('MOGA_LAB_RUN_DIR', raising=False)
    path = tmp_path / 'c.yaml'
    path.write_text(yaml.safe_dump({'model': {'gate_act': 'sigmoid', 'channel_split': [1, 1, 2]},
                                    'optim': {'lr': 5e-4}, 'trainer': {'epochs': 7}}))
    args = fit_cli.build_parser().parse_args(['--config', str(path), '--epochs', '2', '--variant', 'xt',
                                              '--run-dir', str(tmp_path / 'r')])
    cfg = fit_cli.resolve_config(args)
    assert (cfg.model.gate_act, cfg.model.channel_split, cfg.optim.lr, cfg.trainer.epochs) == \
        ('sigmoid', (1, 1, 2), 5e-4, 2)
    path.write_text(yaml.safe_dump({'model': {'gate': 'x'}}))
    with pytest.raises(ValueError, match=r"config section 'model': unknown keys \['gate'\]"):
        fit_cli.resolve_config(fit_cli.build_parser().parse_args(['--config', str(path)]))


def test_every_flag_of_moga_fit_is_a_config_field_and_sets_it(tmp_path, monkeypatch):
    """moga-fit's parser is generated from the RunConfig fields (config_flags): each flag parses a value of its field's
    type and sets exactly that field; a switch sets its value; --resume applies only the runtime flags."""
    from moga_lab.training.config import RunConfig, apply_flags, config_flags
    monkeypatch.delenv('MOGA_LAB_RUN_DIR', raising=False)
    parser = fit_cli.build_parser()
    samples = {int: '3', float: '0.25', str: 'x'}
    flags = config_flags()
    assert len(flags) >= 30 and len({c.flag for c in flags}) == len(flags)
    for c in flags:
        default = RunConfig()
        if c.set_to is not None:
            argv, expected = [c.flag], c.set_to
        elif c.choices is not None:
            argv, expected = [c.flag, str(list(c.choices)[-1])], list(c.choices)[-1]
        elif c.name in ('dilations', 'channel_split'):
            argv, expected = [c.flag, '2,2,2'], (2, 2, 2)
        else:
            inner = next((a for a in getattr(c.type, '__args__', ()) if a is not type(None)), str)  # Optional[X]
            text = {'devices': '2', 'loggers': 'mlflow', 'limit_train_batches': '0.5', 'image_size': '32'}.get(
                c.name, samples.get(c.type, samples.get(inner, 'x')))
            argv = [c.flag, text]
            expected = {'devices': 2, 'loggers': ('csv', 'mlflow')}.get(c.name, parser.parse_args(argv).__dict__[c.dest])
        cfg = apply_flags(RunConfig(), vars(parser.parse_args(argv)))
        changed = {(s, k) for s in ('model', 'data', 'optim', 'trainer')
                   for k, v in vars(getattr(cfg, s)).items() if v != getattr(getattr(default, s), k)}
        assert getattr(getattr(cfg, c.section), c.name) == expected, (c.flag, expected)
        assert changed <= {(c.section, c.name)}, (c.flag, changed)
        assert f'config: {c.section}.{c.name}' in ' '.join(parser.format_help().split())
    resumed = apply_flags(RunConfig(), vars(parser.parse_args(['--lr', '0.5', '--precision', 'bf16-mixed',
                                                               '--no-progress'])), runtime_only=True)
    assert resumed.optim.lr == RunConfig().optim.lr and resumed.trainer.precision == 'bf16-mixed'
    assert resumed.trainer.progress_bar is False


def test_resume_after_sigkill_ends_with_the_same_number_of_steps(tmp_path):
    run = tmp_path / 'run'
    args = ['moga_lab.cli.fit'] + SYN + ['--epochs', '3', '--checkpoint-every', '4', '--run-dir', str(run)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop('MOGA_LAB_RUN_DIR', None)
    proc = subprocess.Popen([sys.executable, '-m', *args], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    last = run / 'last.ckpt'
    deadline = time.time() + 240
    step = 0
    while time.time() < deadline and proc.poll() is None:
        if last.is_file():
            try:
                step = torch.load(last, map_location='cpu', weights_only=True)['global_step']
            except Exception:  # noqa: BLE001 - being written (it is replaced atomically, but be patient)
                step = 0
            if step >= 8:
                break
        time.sleep(0.2)
    assert proc.poll() is None, 'the run finished before it could be killed'
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 8 <= step < 3 * 14
    assert not (run / 'results.yaml').exists()
    # the checkpoint on disk is complete and loadable after the kill
    torch.load(last, map_location='cpu', weights_only=True)
    done = _run_cli(['moga_lab.cli.fit', '--resume', '--run-dir', str(run), '--no-progress'], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    results = yaml.safe_load((run / 'results.yaml').read_text())
    assert results['global_step'] == 3 * (224 // 16)  # exactly as many optimizer steps as an uninterrupted run
    # the wall time covers both segments (the first counted up to its last checkpoint), not only the resumed one
    assert results['segments'] == 2 and results['wall_seconds'] > results['last_segment_wall_seconds'] > 0
    metrics = pd.read_csv(run / 'metrics.csv')
    assert metrics['val/acc1'].dropna().size >= 2 and sorted(metrics['segment'].unique()) == [0, 1]


def test_sigterm_ends_a_fit_with_status_143_not_0(tmp_path):
    """Lightning ends a fit stopped by SIGTERM with exit status 0; a job runner would take that for a finished run."""
    run = tmp_path / 'run'
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop('MOGA_LAB_RUN_DIR', None)
    proc = subprocess.Popen([sys.executable, '-m', 'moga_lab.cli.fit'] + SYN +
                            ['--epochs', '20', '--checkpoint-every', '2', '--run-dir', str(run)],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not (run / 'last.ckpt').is_file():
        time.sleep(0.2)
    assert proc.poll() is None, 'the run finished before it could be stopped'
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert 'stopped by SIGTERM at step' in err and '--resume' in err
    assert not (run / 'results.yaml').exists()


def test_resume_without_checkpoint_is_clear(tmp_path):
    proc = _run_cli(['moga_lab.cli.fit', '--resume', '--run-dir', str(tmp_path / 'none')], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and 'no run with config.yaml and last.ckpt found' in proc.stderr


def test_ddp_on_cpu_matches_one_process(tmp_path):
    """Two gloo processes (Lightning's `ddp`, which re-launches the command) vs one, at the same global batch
    (--batch-size is per device, as in Lightning and timm): same steps, same accuracy within noise."""
    common = ['--variant', 'xtiny', '--data', 'synthetic', '--no-progress', '--epochs', '4', '--lr', '3e-3',
              '--seed', '1']
    one = _run_cli(['moga_lab.cli.fit'] + common + ['--batch-size', '16', '--run-dir', str(tmp_path / 'one')],
                   cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    two = _run_cli(['moga_lab.cli.fit'] + common + ['--batch-size', '8', '--devices', '2', '--strategy', 'ddp',
                                                '--accelerator', 'cpu', '--run-dir', str(tmp_path / 'two')],
                   cwd=tmp_path, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    r1 = yaml.safe_load((tmp_path / 'one' / 'results.yaml').read_text())
    r2 = yaml.safe_load((tmp_path / 'two' / 'results.yaml').read_text())
    assert r2['global_step'] == r1['global_step']
    # 32 validation images: one image is ~3 points; "within noise" = within 5 images
    v1 = pd.read_csv(tmp_path / 'one' / 'metrics.csv')['val/acc1'].dropna().iloc[-1]
    v2 = pd.read_csv(tmp_path / 'two' / 'metrics.csv')['val/acc1'].dropna().iloc[-1]
    assert v1 > 0.6 and v2 > 0.6 and abs(v1 - v2) <= 5 / 32, (v1, v2)
    # the DDP-synchronised metric equals a single-process evaluation of the same weights
    val = _run_cli(['moga_lab.cli.validate', '--checkpoint', str(tmp_path / 'two' / 'last.ckpt'), '--split', 'val'],
                   cwd=tmp_path)
    assert val.returncode == 0, val.stderr[-2000:]
    assert f'top-1 {100 * v2:.2f} %' in val.stdout


def test_validate_fit_checkpoint_and_reference_weights(tmp_path, monkeypatch, capsys):
    from PIL import Image
    from moga_lab.models import MogaNet
    monkeypatch.delenv('MOGA_LAB_RUN_DIR', raising=False)
    assert fit_cli.main(SYN + ['--epochs', '1', '--limit-train-batches', '2', '--run-dir', str(tmp_path / 'r')]) == 0
    capsys.readouterr()
    assert validate_cli.main(['--checkpoint', str(tmp_path / 'r' / 'best.ckpt')]) == 0
    assert 'moganet_xtiny' in capsys.readouterr().out
    # plain weights in the authors' wrapping, an ImageFolder of 3 classes at 64 px
    torch.manual_seed(0)
    model = MogaNet('xtiny', num_classes=3).eval()
    torch.save({'state_dict': model.state_dict(), 'epoch': 300}, tmp_path / 'w.pth.tar')
    for c in range(3):
        (tmp_path / 'val' / f'c{c}').mkdir(parents=True)
        for i in range(2):
            Image.new('RGB', (80, 70), (80 * c, 40 * i, 100)).save(tmp_path / 'val' / f'c{c}' / f'{i}.png')
    assert validate_cli.main(['--checkpoint', str(tmp_path / 'w.pth.tar'), '--variant', 'xt', '--data-dir',
                              str(tmp_path), '--image-size', '64', '--num-workers', '0']) == 0
    out = capsys.readouterr().out
    assert 'moganet_xtiny' in out and '(6 images;' in out
    with pytest.raises(SystemExit) as info:
        validate_cli.main(['--checkpoint', str(tmp_path / 'w.pth.tar'), '--variant', 'tiny', '--data-dir',
                           str(tmp_path), '--num-workers', '0'])
    assert info.value.code == 2 and 'do not fit' in capsys.readouterr().err


def test_bf16_mixed_precision_on_cpu(tmp_path, monkeypatch):
    from moga_lab.models.fuse import onednn_bf16
    monkeypatch.delenv('MOGA_LAB_RUN_DIR', raising=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter('always')
        assert fit_cli.main(SYN + ['--epochs', '1', '--limit-train-batches', '3', '--precision', 'bf16-mixed',
                                   '--run-dir', str(tmp_path / 'r')]) == 0
    # it trains either way; where the CPU has no native bfloat16 the user is told it runs emulated (slowly)
    emulated = [w for w in seen if 'without native bfloat16' in str(w.message)]
    assert len(emulated) == (0 if onednn_bf16() else 1), [str(w.message) for w in seen]
    cfg = yaml.safe_load((tmp_path / 'r' / 'config.yaml').read_text())
    assert cfg['trainer']['precision'] == 'bf16-mixed'
    results = yaml.safe_load((tmp_path / 'r' / 'results.yaml').read_text())
    assert results['global_step'] == 3 and 0 <= results['test/acc1'] <= 1


@pytest.mark.parametrize('native', [True, False])
def test_bf16_without_native_support_warns_only_on_cpu(monkeypatch, native):
    from moga_lab.models import fuse
    from moga_lab.training.run import _warn_emulated_bf16
    monkeypatch.setitem(fuse._BF16, 'ok', native)   # as on a CPU with / without AVX-512 BW/VL/DQ
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter('always')
        _warn_emulated_bf16('bf16-mixed', 'cpu')
        _warn_emulated_bf16('32-true', 'cpu')
        _warn_emulated_bf16('bf16-mixed', 'gpu')
    messages = [str(w.message) for w in seen]
    assert messages == ([] if native else [messages[0]]) and all("use --precision 32-true" in m for m in messages)
    assert native or "precision 'bf16-mixed' on a CPU without native bfloat16" in messages[0]


@pytest.mark.parametrize('epochs,labels', [(6, 6), (20, 3)])
def test_learning_curve_labels_stay_readable_on_long_runs(tmp_path, monkeypatch, epochs, labels):
    import matplotlib.axes
    from moga_lab.training.report import plot_learning_curve
    seen = []
    original = matplotlib.axes.Axes.annotate

    def annotate(self, text, *args, **kwargs):
        seen.append(text)
        return original(self, text, *args, **kwargs)
    monkeypatch.setattr(matplotlib.axes.Axes, 'annotate', annotate)
    acc = [0.8 + 0.01 * k for k in range(epochs)]
    acc[epochs // 2] = 0.99  # the best is not the last
    frame = pd.DataFrame({'step': range(epochs), 'epoch': range(epochs), 'val/acc1': acc,
                          'train/loss_step': [1.0] * epochs, 'lr': [1e-3] * epochs})
    plot_learning_curve(frame, str(tmp_path / 'c.png'))
    assert len(seen) == labels and '99.0' in seen and f'{100 * acc[-1]:.1f}' in seen
    assert (tmp_path / 'c.png').stat().st_size > 10_000


def test_learning_curve_best_and_last_labels_do_not_overlap(tmp_path, monkeypatch):
    import matplotlib.axes
    from moga_lab.training.report import plot_learning_curve
    offsets = {}
    original = matplotlib.axes.Axes.annotate

    def annotate(self, text, *args, **kwargs):
        offsets[text] = kwargs['xytext']
        return original(self, text, *args, **kwargs)
    monkeypatch.setattr(matplotlib.axes.Axes, 'annotate', annotate)
    acc = [0.8 + 0.01 * k for k in range(12)]
    acc[-2], acc[-1] = 0.932, 0.931  # the best right before the last: labels one above, one below
    frame = pd.DataFrame({'step': range(12), 'epoch': range(12), 'val/acc1': acc,
                          'train/loss_step': [1.0] * 12, 'lr': [1e-3] * 12})
    plot_learning_curve(frame, str(tmp_path / 'c.png'))
    assert offsets['93.2'][1] > 0 > offsets['93.1'][1] and offsets['80.0'][1] > 0
