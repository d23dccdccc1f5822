"""``python -m moga_lab.fit --variant small``: train on Fashion-MNIST (default) and report test top-1/top-5.

Precedence: the variant's small-data preset < ``--config FILE`` (YAML with sections model/data/optim/trainer)
< flags. ``--resume`` continues ``--run-dir`` (default: the newest run of the same model and data) from its
``last.ckpt`` with the config saved there.
"""
import glob
import os
import re
import sys
from typing import List, Optional

from moga_lab.cli.common import MIN_IMAGE_SIZE, Parser, choice, fail, int_at_least, int_triple

PRECISIONS = ('32-true', '32', 'bf16-mixed', 'bf16-true', '16-mixed', '64-true')
_RUN_DIR_ENV = 'MOGA_LAB_RUN_DIR'  # fixed by rank 0, inherited by DDP workers


def build_parser() -> Parser:
    """The command's options (``--help`` prints them with the module docstring)."""
    from moga_lab.data import DATASETS
    from moga_lab.models.moganet import MOGANET_ARCHS, VARIANT_ALIASES
    from moga_lab.models.layers import GATE_ACTIVATIONS
    variants = list(MOGANET_ARCHS) + sorted(VARIANT_ALIASES)
    p = Parser(prog='python -m moga_lab.fit', description=__doc__,
               formatter_class=lambda prog: __import__('argparse').RawDescriptionHelpFormatter(prog, width=110))
    g = p.add_argument_group('model')
    g.add_argument('--variant', type=choice(variants), default='small', help='MogaNet variant (default: small)')
    g.add_argument('--model', help='a baseline instead of MogaNet: convnext_atto ... convnext_tiny, '
                   'swin_tiny_patch4_window7_224, swin_femto, swin_pico')
    g.add_argument('--drop-path', type=float, help='stochastic depth rate')
    g.add_argument('--stem-stride', type=int, choices=(1, 2, 4), help='MogaNet stem stride (default: 2 for <=64 px)')
    g.add_argument('--no-gating', action='store_true', help='ablation: remove the gating branch')
    g.add_argument('--gate-act', type=choice(sorted(GATE_ACTIVATIONS)), help='gating activation (default silu)')
    g.add_argument('--dilations', type=int_triple, help='multi-order DW dilations, default 1,2,3')
    g.add_argument('--channel-split', type=int_triple, help='multi-order channel split, default 1:3:4')
    g.add_argument('--no-fd', action='store_true', help='ablation: no feature decomposition in the spatial block')
    g.add_argument('--no-ca', action='store_true', help='ablation: no channel aggregation (plain DW-conv FFN)')
    g.add_argument('--attn-force-fp32', action='store_true', help="the reference's attn_force_fp32 flag")
    g = p.add_argument_group('data')
    g.add_argument('--data', type=choice(DATASETS), help='dataset (default fashion-mnist)')
    g.add_argument('--data-dir', help='dataset folder (default for fashion-mnist: /usr/share/datasets/fashion-mnist)')
    g.add_argument('--download', action='store_true', help='CIFAR only: fetch the archive if it is missing')
    g.add_argument('--batch-size', type=int)
    g.add_argument('--image-size', type=int_at_least(MIN_IMAGE_SIZE))
    g.add_argument('--val-size', type=int, help='images held out of the training set for validation')
    g.add_argument('--num-workers', type=int)
    g = p.add_argument_group('optimisation')
    g.add_argument('--epochs', type=int)
    g.add_argument('--limit-train-batches', type=float, help='fraction (<=1) or number of training batches per epoch')
    g.add_argument('--lr', type=float)
    g.add_argument('--lr-from', metavar='SWEEP_CSV', nargs='+',
                   help="the learning rate with the best validation top-1 in moga-sweep's sweep.csv (several files: "
                        'one grid, the choice made over all of them)')
    g.add_argument('--weight-decay', type=float)
    g.add_argument('--warmup-epochs', type=float)
    g.add_argument('--label-smoothing', type=float)
    g.add_argument('--mixup', type=float)
    g.add_argument('--cutmix', type=float)
    g.add_argument('--ema', type=float, help='EMA decay of the weights, evaluated alongside (e.g. 0.999)')
    g.add_argument('--grad-clip', type=float)
    g = p.add_argument_group('run')
    g.add_argument('--config', help='YAML file with sections model/data/optim/trainer')
    g.add_argument('--run-dir', help='where checkpoints, config.yaml, metrics.csv and plots go')
    g.add_argument('--resume', action='store_true', help='continue the run in --run-dir from last.ckpt')
    g.add_argument('--devices', help='number of devices (or "auto")')
    g.add_argument('--strategy', help='Lightning strategy: auto, ddp, ddp_spawn, ...')
    g.add_argument('--accelerator', help='cpu, gpu, auto')
    g.add_argument('--precision', type=choice(PRECISIONS), help='32-true (default), bf16-mixed (CPU and GPU), ...')
    g.add_argument('--seed', type=int)
    g.add_argument('--checkpoint-every', type=int, help='write last.ckpt every N optimizer steps')
    g.add_argument('--no-progress', action='store_true', help='no progress bar (logs only)')
    g.add_argument('--interaction-every', type=int, help='compute the interaction curve on a few validation images '
                   'every K epochs (interaction_by_epoch.csv/png in the run directory)')
    g.add_argument('--interaction-images', type=int, help='images for --interaction-every (default 4)')
    g = p.add_argument_group('tracking')
    g.add_argument('--logger', type=_loggers, help='trackers, comma-separated: csv (always on), tensorboard (default), '
                   'mlflow, wandb (optional extras: pip install "moga_lab[tracking]" / "moga_lab[wandb]")')
    g.add_argument('--tracking-uri', help='MLflow store for --logger mlflow (default sqlite:///runs/mlflow.db)')
    return p


def _loggers(text: str):
    import argparse
    from moga_lab.training.loggers import parse_loggers
    try:
        return parse_loggers(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _devices(text: str):
    if text in (None, 'auto'):
        return text
    if re.fullmatch(r'\d+', text):
        return int(text)
    raise ValueError(f'--devices={text!r} is not accepted; accepted: a positive integer or auto')


def _default_run_dir(model: str, data: str) -> str:
    return os.path.join('runs', f'{model}-{data}')


def _latest_run_dir(base: str) -> Optional[str]:
    candidates = [d for d in [base] + glob.glob(base + '-*') if os.path.isfile(os.path.join(d, 'last.ckpt'))]
    return max(candidates, key=lambda d: os.path.getmtime(os.path.join(d, 'last.ckpt'))) if candidates else None


def _fresh_run_dir(base: str) -> str:
    if not os.path.exists(base) or not os.listdir(base):
        return base
    k = 2
    while os.path.exists(f'{base}-{k}') and os.listdir(f'{base}-{k}'):
        k += 1
    return f'{base}-{k}'


def resolve_config(args):
    """Flags -> RunConfig (imports the heavy stack lazily so `--help` and argument errors are instant)."""
    from moga_lab.training.factory import build_model  # noqa: F401  (validated when the module is built)
    if args.resume:
        return _resumed_config(args)
    cfg = _base_config(args)
    _apply_model_flags(cfg.model, args)
    _apply_data_flags(cfg.data, args)
    _apply_optim_flags(cfg, args)
    _apply_trainer_flags(cfg.trainer, args)
    _apply_runtime(cfg, args)
    t, m = cfg.trainer, cfg.model
    if os.environ.get(_RUN_DIR_ENV):
        t.run_dir = os.environ[_RUN_DIR_ENV]
    elif args.run_dir:
        t.run_dir = args.run_dir
    else:
        t.run_dir = _fresh_run_dir(_default_run_dir(m.name if not m.name.startswith('moganet') else
                                                    f'moganet_{_variant(m.name)}', cfg.data.name))
    cfg.validate()
    return cfg


def _resumed_config(args):
    """The saved run's config; only where and how it runs may change on resume (the recipe is the saved one)."""
    from moga_lab.training.config import RunConfig, load_yaml
    base = args.run_dir or _latest_run_dir(_default_run_dir(
        args.model or f'moganet_{_variant(args.variant)}', args.data or 'fashion-mnist'))
    if base is None or not os.path.isfile(os.path.join(base, 'config.yaml')):
        raise FileNotFoundError(f'--resume: no run with config.yaml and last.ckpt found'
                                f'{" in " + args.run_dir if args.run_dir else ""}; pass --run-dir DIR')
    cfg = RunConfig.from_dict(load_yaml(os.path.join(base, 'config.yaml')))
    cfg.trainer.run_dir = base
    _apply_runtime(cfg, args)
    return cfg


def _base_config(args):
    """The small-data recipe of ``--variant``, with ``--config FILE``'s sections merged over it."""
    from moga_lab.training.config import RunConfig, load_yaml, small_data_recipe
    cfg = small_data_recipe(args.variant)
    if not args.config:
        return cfg
    merged = cfg.to_dict()
    for section, values in load_yaml(args.config).items():
        if section not in merged:
            merged[section] = values  # from_dict names the bad section
        elif not isinstance(values, dict):
            raise ValueError(f'config section {section!r} in {args.config} must be a mapping')
        else:
            merged[section].update(values)
    return RunConfig.from_dict(merged)


def _set_if(obj, attr: str, value) -> None:
    """A flag given on the command line overrides the config; one left out keeps it."""
    if value is not None:
        setattr(obj, attr, value)


def _apply_model_flags(m, args) -> None:
    if args.model:
        m.name = args.model
    for attr, flag in (('drop_path_rate', 'drop_path'), ('stem_stride', 'stem_stride'), ('gate_act', 'gate_act'),
                       ('dilations', 'dilations'), ('channel_split', 'channel_split')):
        _set_if(m, attr, getattr(args, flag))
    if args.no_gating:
        m.gating = False
    if args.no_fd:
        m.feat_decompose = False
    if args.no_ca:
        m.channel_aggregation = False
    if args.attn_force_fp32:
        m.attn_force_fp32 = True


def _apply_data_flags(d, args) -> None:
    for attr, flag in (('name', 'data'), ('data_dir', 'data_dir'), ('batch_size', 'batch_size'),
                       ('image_size', 'image_size'), ('val_size', 'val_size'), ('num_workers', 'num_workers')):
        _set_if(d, attr, getattr(args, flag))
    if args.download:
        d.download = True


def _apply_optim_flags(cfg, args) -> None:
    o = cfg.optim
    _set_if(o, 'lr', args.lr)
    if getattr(args, 'lr_from', None):
        if args.lr is not None:
            raise ValueError(f'--lr {args.lr:g} and --lr-from {" ".join(args.lr_from)}: give one of them')
        from moga_lab.training.sweep import chosen_lr
        o.lr = chosen_lr(args.lr_from, cfg.model.name)
    for attr, flag in (('weight_decay', 'weight_decay'), ('warmup_epochs', 'warmup_epochs'),
                       ('label_smoothing', 'label_smoothing'), ('mixup', 'mixup'), ('cutmix', 'cutmix'),
                       ('ema_decay', 'ema'), ('grad_clip', 'grad_clip')):
        _set_if(o, attr, getattr(args, flag))


def _apply_trainer_flags(t, args) -> None:
    _set_if(t, 'epochs', args.epochs)
    if args.limit_train_batches is not None:
        v = args.limit_train_batches
        t.limit_train_batches = int(v) if v > 1 else v
    for attr in ('seed', 'interaction_every', 'interaction_images'):
        _set_if(t, attr, getattr(args, attr))


def _variant(name: str) -> str:
    from moga_lab.models import resolve_variant
    return resolve_variant(name)


def _apply_runtime(cfg, args):
    t = cfg.trainer
    if args.devices is not None:
        t.devices = _devices(args.devices)
    if args.strategy is not None:
        t.strategy = args.strategy
    if args.accelerator is not None:
        t.accelerator = args.accelerator
    if args.precision is not None:
        t.precision = args.precision
    if args.checkpoint_every is not None:
        t.checkpoint_every_n_steps = args.checkpoint_every
    if args.no_progress:
        t.progress_bar = False
    if args.logger is not None:
        t.loggers = args.logger
    if args.tracking_uri is not None:
        t.tracking_uri = args.tracking_uri


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point: parse ``argv``, run, exit 2 with one line on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from moga_lab.utils.runtime import keep_freed_memory
    keep_freed_memory()  # speed only: freed tensor buffers stay in the heap (moga_lab/utils/runtime.py)
    prog = parser.prog
    from moga_lab.data import DataError
    from moga_lab.training.config import ConfigError
    try:
        cfg = resolve_config(args)
        from moga_lab.training.loggers import check_loggers, parse_loggers
        cfg.trainer.loggers = parse_loggers(','.join(cfg.trainer.loggers))  # also from a --config YAML
        if cfg.trainer.tracking_uri and 'mlflow' not in cfg.trainer.loggers:
            raise ValueError(f'--tracking-uri {cfg.trainer.tracking_uri} is only used by the mlflow logger; add mlflow to '
                             f'--logger (e.g. --logger tensorboard,mlflow)')
        check_loggers(cfg.trainer.loggers, cfg.trainer.tracking_uri)  # a tracker asked for but unusable: stop now
        os.environ.setdefault(_RUN_DIR_ENV, cfg.trainer.run_dir)
        from moga_lab.training.run import prepare
        prepared = prepare(cfg)  # reads the data and builds the network: bad input fails here, in one line
    except (ValueError, ConfigError, FileNotFoundError, DataError) as error:
        fail(prog, str(error))
    from moga_lab.training import NonFiniteLossError, fit
    try:
        result = fit(cfg, resume=args.resume, prepared=prepared)
    except (DataError, FileNotFoundError) as error:
        fail(prog, str(error))
    except NonFiniteLossError as error:
        fail(prog, str(error), status=1)
    if result.test:
        print(f'\n{cfg.model.name} on {cfg.data.name}: test top-1 {100 * result.test.get("test/acc1", float("nan")):.2f} %'
              f'  top-5 {100 * result.test.get("test/acc5", float("nan")):.2f} %  '
              f'({result.global_step} steps, {result.train_images_per_second:.0f} train images/s, '
              f'{result.seconds / 60:.1f} min)')
    print(f'run directory: {result.run_dir} (last.ckpt, best.ckpt, config.yaml, metrics.csv, learning_curve.png)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
