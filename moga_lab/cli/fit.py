"""``python -m moga_lab.fit --variant small``: train on Fashion-MNIST (default) and report test top-1/top-5.

Precedence: the variant's small-data preset < ``--config FILE`` (YAML with sections model/data/optim/trainer)
< flags. ``--resume`` continues ``--run-dir`` (default: the newest run of the same model and data) from its
``last.ckpt`` with the config saved there.
"""
import glob
import os
import sys
from typing import List, Optional

from moga_lab.cli.common import Parser, choice, fail, int_at_least, int_triple

_RUN_DIR_ENV = 'MOGA_LAB_RUN_DIR'  # fixed by rank 0, inherited by DDP workers
_GROUPS = {'model': 'model', 'data': 'data', 'optim': 'optimisation', 'trainer': 'run'}
_TRACKING = ('loggers', 'tracking_uri')


def build_parser() -> Parser:
    """The command's options (``--help`` prints them with the module docstring): the `RunConfig` fields' flags
    (`moga_lab.training.config.config_flags`: flag, type, choices and help come from the field) and the few that are
    the command's own (``--variant``, ``--lr-from``, ``--config``, ``--run-dir``, ``--resume``)."""
    import argparse
    from moga_lab.models.moganet import MOGANET_ARCHS, VARIANT_ALIASES
    from moga_lab.training.config import config_flags
    variants = list(MOGANET_ARCHS) + sorted(VARIANT_ALIASES)
    p = Parser(prog='python -m moga_lab.fit', description=__doc__,
               formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, width=110))
    groups = {title: p.add_argument_group(title) for title in list(_GROUPS.values()) + ['tracking']}
    groups['model'].add_argument('--variant', type=choice(variants), default='small',
                                 help='MogaNet variant (default: small)')
    for c in config_flags():
        group = groups['tracking' if c.name in _TRACKING else _GROUPS[c.section]]
        where = f'config: {c.section}.{c.name}'  # the YAML key the flag overrides
        text = f'{c.help} ({where})' if c.help else f'({where})'
        if c.set_to is not None:
            group.add_argument(c.flag, action='store_true', help=text)
        else:
            group.add_argument(c.flag, type=_flag_type(c), help=text)
        if c.name == 'lr':
            group.add_argument('--lr-from', metavar='SWEEP_CSV', nargs='+',
                               help="the learning rate with the best validation top-1 in moga-sweep's sweep.csv "
                                    '(several files: one grid, the choice made over all of them)')
    g = groups['run']
    g.add_argument('--config', help='YAML file with sections model/data/optim/trainer')
    g.add_argument('--run-dir', help='where checkpoints, config.yaml, metrics.csv and plots go')
    g.add_argument('--resume', action='store_true', help='continue the run in --run-dir from last.ckpt')
    return p


def _flag_type(c):
    """argparse's ``type=`` for a config flag: the field's parser, choices or minimum, else its type (Optional[X] and
    tuples of three ints included); bad text gets one line naming what is accepted."""
    import argparse
    import typing
    if c.choices is not None:
        accepted = [str(v) for v in c.choices]
        parse = choice(accepted)
        return (lambda text: int(parse(text))) if all(isinstance(v, int) for v in c.choices) else parse
    if c.minimum is not None:
        return int_at_least(c.minimum)
    if c.parse is not None:
        def parse_with(text):
            try:
                return c.parse(text)
            except ValueError as error:
                raise argparse.ArgumentTypeError(str(error)) from None
        return parse_with
    kind = c.type
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) is tuple and args == [int, int, int]:
        return int_triple
    if typing.get_origin(kind) is typing.Union and len(args) == 1:
        kind = args[0]
    return kind


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
    from moga_lab.training.config import apply_flags
    apply_flags(cfg, vars(args))
    if getattr(args, 'lr_from', None):
        if args.lr is not None:
            raise ValueError(f'--lr {args.lr:g} and --lr-from {" ".join(args.lr_from)}: give one of them')
        from moga_lab.training.sweep import chosen_lr
        cfg.optim.lr = chosen_lr(args.lr_from, cfg.model.name)
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
    from moga_lab.training.config import apply_flags
    return apply_flags(cfg, vars(args), runtime_only=True)


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


def _variant(name: str) -> str:
    from moga_lab.models import resolve_variant
    return resolve_variant(name)


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
