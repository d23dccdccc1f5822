"""A run's configuration in one typed place: dataclasses, presets, YAML in and out.

The CLI only parses flags into a `RunConfig`; the LightningModule, DataModule and Trainer are built
from it. Everything here is plain types, so it round-trips through YAML and Lightning's ``weights_only``
checkpoint loading.
"""
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import yaml

from moga_lab.data import DATASETS
from moga_lab.models import GATE_ACTIVATIONS, resolve_variant
from moga_lab.models.factory import MIN_IMAGE_SIZE
from moga_lab.utils.schema import check_mapping

__all__ = ['ModelConfig', 'DataConfig', 'OptimConfig', 'TrainerConfig', 'RunConfig', 'ConfigFlag', 'config_flags',
           'apply_flags', 'paper_recipe', 'small_data_recipe', 'load_yaml', 'ConfigError', 'PRECISIONS']


class ConfigError(ValueError):
    """A config value or file that cannot be used; the message names it and what is accepted."""


PRECISIONS = ('32-true', '32', 'bf16-mixed', 'bf16-true', '16-mixed', '64-true')


def _opt(default: Any = dataclasses.MISSING, *, flag: str, help: str = '', set_to: Any = None, parse: Any = None,
         choices: Optional[Sequence[Any]] = None, minimum: Optional[int] = None, runtime: bool = False) -> Any:
    """A field that ``moga-fit`` sets with ``flag``: its parser is generated from these (`config_flags`).

    ``set_to``: the flag takes no value and sets the field to this (``--no-gating``); ``parse``: how the flag's text
    becomes the value (a ValueError names what is accepted), else the field's type; ``runtime``: where and how a run
    executes, the only flags ``--resume`` applies to a saved run.
    """
    return field(default=default, metadata=dict(flag=flag, help=help, set_to=set_to, parse=parse, choices=choices,
                                                minimum=minimum, runtime=runtime))


def _batches(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError(f'{text!r} is not accepted; accepted: a fraction in (0, 1] or a number of batches')
    return int(value) if value > 1 else value


def _devices(text: str) -> Any:
    if text == 'auto':
        return text
    if re.fullmatch(r'\d+', text):
        return int(text)
    raise ValueError(f'--devices={text!r} is not accepted; accepted: a positive integer or auto')


def _loggers(text: str) -> Tuple[str, ...]:
    from moga_lab.training.loggers import parse_loggers
    return tuple(parse_loggers(text))


@dataclass
class ModelConfig:
    """The network of a run: a name, stochastic depth, and MogaNet's stem stride and ablation switches.

    Attributes:
        name: ``moganet_<variant>`` or a timm ConvNeXt / Swin name (see `moga_lab.models.create_classifier`).
        drop_path_rate: stochastic depth rate.
        stem_stride: MogaNet only: 4, 2 or 1; None = 4 above 64 px, 2 for small images.
        gating: MogaNet's gating branch (paper default True).
        gate_act: activation of the gating and value branches ('silu', 'sigmoid', 'gelu', 'identity').
        dilations: dilations of the three multi-order depth-wise convolutions.
        channel_split: relative channels of the three orders (1:3:4 in the paper).
        feat_decompose: feature decomposition in the spatial block.
        channel_aggregation: channel aggregation in the FFN.
        attn_force_fp32: the reference's flag (gating product in float32, activation applied twice).
        extra: keyword arguments passed to ``timm.create_model`` as they are.
    """
    name: str = _opt('moganet_small', flag='--model', help='a baseline instead of MogaNet: convnext_atto ... convnext_tiny, '
                     'swin_tiny_patch4_window7_224, swin_femto, swin_pico')
    drop_path_rate: float = _opt(0.1, flag='--drop-path', help='stochastic depth rate')
    stem_stride: Optional[int] = _opt(None, flag='--stem-stride', choices=(1, 2, 4),
                                      help='MogaNet stem stride (default: 2 for <=64 px)')
    # MogaNet ablation switches (paper defaults)
    gating: bool = _opt(True, flag='--no-gating', set_to=False, help='ablation: remove the gating branch')
    gate_act: str = _opt('silu', flag='--gate-act', choices=sorted(GATE_ACTIVATIONS),
                         help='gating activation (default silu)')
    dilations: Tuple[int, int, int] = _opt((1, 2, 3), flag='--dilations', help='multi-order DW dilations, default 1,2,3')
    channel_split: Tuple[int, int, int] = _opt((1, 3, 4), flag='--channel-split',
                                               help='multi-order channel split, default 1:3:4')
    feat_decompose: bool = _opt(True, flag='--no-fd', set_to=False,
                                help='ablation: no feature decomposition in the spatial block')
    channel_aggregation: bool = _opt(True, flag='--no-ca', set_to=False,
                                     help='ablation: no channel aggregation (plain DW-conv FFN)')
    attn_force_fp32: bool = _opt(False, flag='--attn-force-fp32', set_to=True, help="the reference's attn_force_fp32 flag")
    extra: Dict[str, Any] = field(default_factory=dict)  # passed to timm.create_model as-is


@dataclass
class DataConfig:
    """The data of a run.

    Attributes:
        name: one of `moga_lab.data.DATASETS` ('fashion-mnist', 'cifar10', 'cifar100', 'imagefolder', 'synthetic').
        data_dir: the dataset's folder; None = the dataset's default (Debian's Fashion-MNIST folder).
        batch_size: images per device and step.
        num_workers: DataLoader workers.
        val_size: training images held out for validation; None = the dataset's default (5000 for Fashion-MNIST).
        image_size: resize to this side (bicubic); None = the dataset's native size.
        augment: random crop and flip for training.
        reprob: random-erasing probability.
        download: CIFAR only, opt-in (nothing downloads otherwise).
        auto_augment: ImageFolder only: a timm RandAugment string such as ``rand-m9-mstd0.5-inc1``.
    """
    name: str = _opt('fashion-mnist', flag='--data', choices=DATASETS, help='dataset (default fashion-mnist)')
    data_dir: Optional[str] = _opt(None, flag='--data-dir',
                                   help='dataset folder (default for fashion-mnist: /usr/share/datasets/fashion-mnist)')
    batch_size: int = _opt(64, flag='--batch-size')
    num_workers: int = _opt(0, flag='--num-workers')
    val_size: Optional[int] = _opt(None, flag='--val-size', help='images held out of the training set for validation')
    image_size: Optional[int] = _opt(None, flag='--image-size', minimum=MIN_IMAGE_SIZE)
    augment: bool = True
    reprob: float = 0.0                  # random erasing
    download: bool = _opt(False, flag='--download', set_to=True, help='CIFAR only: fetch the archive if it is missing')
    auto_augment: Optional[str] = None   # ImageFolder only: timm RandAugment string, e.g. rand-m9-mstd0.5-inc1


@dataclass
class OptimConfig:
    """AdamW, its cosine schedule and the regularisers of the recipe.

    Attributes:
        lr: peak learning rate.
        weight_decay: AdamW weight decay (not applied to norms, biases and scales).
        warmup_epochs: linear warm-up length in epochs (fractions allowed).
        min_lr: floor of the cosine schedule.
        warmup_lr: learning rate at the start of the warm-up.
        label_smoothing: label smoothing of the cross-entropy.
        mixup: Mixup alpha (0 = off).
        cutmix: CutMix alpha (0 = off).
        ema_decay: EMA decay of the weights; None = no EMA.
        grad_clip: gradient-norm clipping; None = off.
    """
    lr: float = _opt(1e-3, flag='--lr')
    weight_decay: float = _opt(0.05, flag='--weight-decay')
    warmup_epochs: float = _opt(0.2, flag='--warmup-epochs')
    min_lr: float = 1e-5
    warmup_lr: float = 1e-6
    label_smoothing: float = _opt(0.1, flag='--label-smoothing')
    mixup: float = _opt(0.0, flag='--mixup')
    cutmix: float = _opt(0.0, flag='--cutmix')
    ema_decay: Optional[float] = _opt(None, flag='--ema', help='EMA decay of the weights, evaluated alongside (e.g. 0.999)')
    grad_clip: Optional[float] = _opt(5.0, flag='--grad-clip')


@dataclass
class TrainerConfig:
    """The Lightning Trainer of a run, its run directory, checkpoint and log cadence, and trackers.

    Attributes:
        epochs: training epochs.
        limit_train_batches: a fraction (<= 1) or a number of training batches per epoch; None = all.
        limit_val_batches: the same for validation (quick runs).
        limit_test_batches: the same for the final test.
        devices: Lightning's ``devices`` (an int, a list, or 'auto').
        strategy: Lightning's strategy ('auto', 'ddp', ...).
        accelerator: Lightning's accelerator ('auto', 'cpu', 'gpu', ...).
        precision: Lightning's precision ('32-true', 'bf16-mixed', ...).
        seed: seed of the weights, the data order and the validation split.
        run_dir: where config.yaml, checkpoints, metrics.csv, the learning curve and results.yaml go.
        checkpoint_every_n_steps: ``last.ckpt`` cadence in optimizer steps (also written at the end).
        log_every_n_steps: logging cadence.
        progress_bar: Lightning's progress bar.
        val_check_interval: the fraction of an epoch between validations; None = once per epoch.
        interaction_every: compute the interaction curve every k epochs (``InteractionCurveCallback``); None = never.
        interaction_images: test images of that curve.
        loggers: trackers: 'csv' (always on), 'tensorboard', 'mlflow', 'wandb'.
        tracking_uri: MLflow store of the 'mlflow' logger; None = ``sqlite:///runs/mlflow.db`` or
            ``$MLFLOW_TRACKING_URI``.
    """
    epochs: int = _opt(1, flag='--epochs')
    limit_train_batches: Optional[float] = _opt(None, flag='--limit-train-batches', parse=_batches,
                                                help='fraction (<=1) or number of training batches per epoch')
    limit_val_batches: Optional[float] = None    # same, for validation (quick runs)
    limit_test_batches: Optional[float] = None   # same, for the final test
    devices: Any = _opt(1, flag='--devices', parse=_devices, runtime=True, help='number of devices (or "auto")')
    strategy: str = _opt('auto', flag='--strategy', runtime=True, help='Lightning strategy: auto, ddp, ddp_spawn, ...')
    accelerator: str = _opt('auto', flag='--accelerator', runtime=True, help='cpu, gpu, auto')
    precision: str = _opt('32-true', flag='--precision', choices=PRECISIONS, runtime=True,
                          help='32-true (default), bf16-mixed (CPU and GPU), ...')
    seed: int = _opt(0, flag='--seed')
    run_dir: str = 'runs/latest'
    checkpoint_every_n_steps: int = _opt(100, flag='--checkpoint-every', runtime=True,
                                         help='write last.ckpt every N optimizer steps')
    log_every_n_steps: int = 20
    progress_bar: bool = _opt(True, flag='--no-progress', set_to=False, runtime=True, help='no progress bar (logs only)')
    val_check_interval: Optional[float] = None  # fraction of an epoch between validations (None = once per epoch)
    interaction_every: Optional[int] = _opt(None, flag='--interaction-every',
                                            help='compute the interaction curve on a few validation images every K '
                                                 'epochs (interaction_by_epoch.csv/png in the run directory)')
    interaction_images: int = _opt(4, flag='--interaction-images', help='images for --interaction-every (default 4)')
    loggers: Tuple[str, ...] = _opt(('csv', 'tensorboard'), flag='--logger', parse=_loggers, runtime=True,
                                    help='trackers, comma-separated: csv (always on), tensorboard (default), mlflow, wandb '
                                         '(optional extras: pip install "moga_lab[tracking]" / "moga_lab[wandb]")')
    tracking_uri: Optional[str] = _opt(None, flag='--tracking-uri', runtime=True,
                                       help='MLflow store for --logger mlflow (default sqlite:///runs/mlflow.db)')


@dataclass
class RunConfig:
    """A whole run in one typed place; plain types only, so it round-trips through YAML and ``weights_only``
    checkpoints.

    Attributes:
        model: the network (`ModelConfig`).
        data: the data (`DataConfig`).
        optim: optimizer, schedule and regularisers (`OptimConfig`).
        trainer: the Lightning Trainer, run directory and trackers (`TrainerConfig`).

    Example:
        ```python
        cfg = small_data_recipe('xtiny')
        cfg.optim.lr = 4e-3
        RunConfig.from_dict(cfg.to_dict()) == cfg   # True
        ```
    """
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def to_dict(self) -> Dict[str, Any]:
        """Nested plain dict (tuples as lists), as saved in ``config.yaml`` and checkpoints."""
        def plain(v):
            if isinstance(v, tuple):
                return list(v)
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v
        return {k: plain(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> 'RunConfig':
        """Build from a nested dict; unknown sections or keys raise `ConfigError` naming the accepted ones."""
        d = dict(check_mapping(d or {}, 'config', SECTIONS, error=ConfigError))
        parts = {}
        for f in dataclasses.fields(cls):
            parts[f.name] = _build(SECTIONS[f.name], d.get(f.name) or {}, f.name)
        return cls(**parts)

    def to_yaml(self) -> str:
        """The config as YAML text (what ``--config`` reads)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def validate(self) -> 'RunConfig':
        """Check the values no type can: `ConfigError` names the first bad one (its field, the ``moga-fit`` flag that
        sets it) and what is accepted. `moga_lab.training.prepare` and so `moga_lab.training.fit` call it, so a
        config built in Python is checked as the command's flags are; returns ``self``."""
        from lightning.pytorch.strategies import StrategyRegistry
        m, d, o, t = self.model, self.data, self.optim, self.trainer
        checks = [  # (holds, field, what is accepted)
            (t.epochs >= 1, 'trainer.epochs', 'must be >= 1'),
            (d.image_size is None or d.image_size >= MIN_IMAGE_SIZE, 'data.image_size', f'must be >= {MIN_IMAGE_SIZE}'),
            (d.batch_size >= 1, 'data.batch_size', 'must be >= 1'),
            (o.lr > 0, 'optim.lr', 'must be > 0'),
            (0 <= o.label_smoothing < 1, 'optim.label_smoothing', 'must be in [0, 1)'),
            (o.ema_decay is None or 0 < o.ema_decay < 1, 'optim.ema_decay', 'must be in (0, 1)'),
            (o.weight_decay >= 0, 'optim.weight_decay', 'must be >= 0'),
            (0 <= m.drop_path_rate < 1, 'model.drop_path_rate', 'must be in [0, 1)'),
            (t.checkpoint_every_n_steps >= 1, 'trainer.checkpoint_every_n_steps', 'must be >= 1'),
            (not t.interaction_every or t.interaction_every >= 1, 'trainer.interaction_every', 'must be >= 1'),
        ]
        for ok, name, accepted in checks:
            if not ok:
                section, key = name.split('.')
                raise ConfigError(f'{name}={getattr(getattr(self, section), key)} ({flag_of(section, key)}) {accepted}')
        strategies = ['auto'] + StrategyRegistry.available_strategies()
        if t.strategy not in strategies:
            raise ConfigError(f'trainer.strategy={t.strategy!r} ({flag_of("trainer", "strategy")}) is not accepted; accepted: '
                              f'{", ".join(s for s in strategies if not s.startswith(("deepspeed", "fsdp_cpu")))}')
        return self


SECTIONS = {'model': ModelConfig, 'data': DataConfig, 'optim': OptimConfig, 'trainer': TrainerConfig}


class ConfigFlag(NamedTuple):
    """A ``moga-fit`` flag and the `RunConfig` field it sets (from the field's metadata, see `_opt`)."""
    section: str
    name: str
    flag: str
    dest: str
    type: Any
    help: str
    set_to: Any
    parse: Any
    choices: Optional[Sequence[Any]]
    minimum: Optional[int]
    runtime: bool


def config_flags() -> List[ConfigFlag]:
    """Every `RunConfig` field that a ``moga-fit`` flag sets, in section order: what the command's parser is built
    from and what `apply_flags` applies, so a field, its flag and its help live in one place."""
    out = []
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if 'flag' in f.metadata:
                md = f.metadata
                out.append(ConfigFlag(section, f.name, md['flag'], md['flag'][2:].replace('-', '_'), f.type, md['help'],
                                      md['set_to'], md['parse'], md['choices'], md['minimum'], md['runtime']))
    return out


def flag_of(section: str, name: str) -> str:
    """The ``moga-fit`` flag of a field (for messages), or '' where it has none."""
    return next((c.flag for c in config_flags() if (c.section, c.name) == (section, name)), '')


def apply_flags(cfg: 'RunConfig', values: Dict[str, Any], runtime_only: bool = False) -> 'RunConfig':
    """Set the fields whose flags were given: ``values`` maps a flag's ``dest`` to its parsed value, None (or False
    for a switch) meaning "not given", which keeps the config's value.

    Args:
        cfg: the config to change (in place; also returned).
        values: parsed flags, e.g. ``vars(argparse_namespace)``.
        runtime_only: only where and how the run executes (``--resume`` keeps the saved recipe).
    """
    for c in config_flags():
        if runtime_only and not c.runtime:
            continue
        value = values.get(c.dest)
        if c.set_to is not None:
            if value:
                setattr(getattr(cfg, c.section), c.name, c.set_to)
        elif value is not None:
            setattr(getattr(cfg, c.section), c.name, value)
    return cfg


def _build(sub_cls, values: Dict[str, Any], section: str):
    check_mapping(values, f'config section {section!r}', [f.name for f in dataclasses.fields(sub_cls)],
                  error=ConfigError)
    values = dict(values)
    for key in ('dilations', 'channel_split', 'loggers'):
        if key in values and values[key] is not None:
            values[key] = tuple(values[key])
    return sub_cls(**values)


def load_yaml(path: str) -> Dict[str, Any]:
    """The mapping in a YAML config file; `ConfigError` for a missing file, bad YAML or a non-mapping."""
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f'config file {path!r} does not exist') from None
    except yaml.YAMLError as error:
        raise ConfigError(f'config file {path!r} is not valid YAML: {error}') from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f'config file {path!r} must hold a mapping with sections model/data/optim/trainer')
    return data or {}


# ---- presets --------------------------------------------------------------------------------------
# The paper's ImageNet-1k recipe (Appendix, Table A1), for users with GPUs.
_PAPER = {
    #          wd     drop_path  randaug  mixup  cutmix  ema
    'xtiny': (0.03, 0.05, 'rand-m7-mstd0.5-inc1', 0.1, 1.0, None),
    'tiny': (0.04, 0.1, 'rand-m7-mstd0.5-inc1', 0.1, 1.0, None),
    'small': (0.05, 0.1, 'rand-m9-mstd0.5-inc1', 0.8, 1.0, 0.9999),
    'base': (0.05, 0.2, 'rand-m9-mstd0.5-inc1', 0.8, 1.0, 0.9999),
    'large': (0.05, 0.3, 'rand-m9-mstd0.5-inc1', 0.8, 1.0, 0.9999),
    'xlarge': (0.05, 0.4, 'rand-m9-mstd0.5-inc1', 0.8, 1.0, 0.9999),
}


def paper_recipe(variant: str, data_dir: Optional[str] = None, global_batch: int = 1024) -> RunConfig:
    """The paper's ImageNet recipe for a variant.

    AdamW lr 1e-3 at batch 1024 (scaled linearly with ``global_batch``), 300 epochs cosine, 5 warm-up epochs, label
    smoothing 0.1, random erasing 0.25, RandAugment and Mixup / CutMix by size (EMA from S up), the paper's weight
    decay and drop path per variant, 224 px training and crop 0.9 bicubic test.

    Args:
        variant: a MogaNet variant or alias.
        data_dir: the ImageNet folder (``train/`` and ``val/`` class folders).
        global_batch: the batch over all devices; the learning rate scales with it.

    Returns:
        The `RunConfig`.
    """
    v = resolve_variant(variant)
    wd, dpr, aa, mixup, cutmix, ema = _PAPER[v]
    cfg = RunConfig()
    cfg.model = ModelConfig(name=f'moganet_{v}', drop_path_rate=dpr, stem_stride=4)
    cfg.data = DataConfig(name='imagefolder', data_dir=data_dir, batch_size=128, num_workers=8, image_size=224,
                          reprob=0.25)
    cfg.model.extra = {}
    cfg.optim = OptimConfig(lr=1e-3 * global_batch / 1024, weight_decay=wd, warmup_epochs=5, min_lr=1e-5,
                            label_smoothing=0.1, mixup=mixup, cutmix=cutmix, ema_decay=ema, grad_clip=None)
    cfg.trainer = TrainerConfig(epochs=300, checkpoint_every_n_steps=1000)
    cfg.data.auto_augment = aa
    return cfg


# Small-data defaults (Fashion-MNIST on a 2-core CPU): one epoch, batch 64, lr 1e-3 scaled for the batch
# (AdamW is not sensitive to that at this size), light weight decay, no Mixup (it slows convergence within
# a one-epoch budget). drop path is that of the paper per variant.
_DROP_PATH = dict(xtiny=0.05, tiny=0.1, small=0.1, base=0.2, large=0.3, xlarge=0.4)


def small_data_recipe(variant: str) -> RunConfig:
    """The ``fit`` defaults for Fashion-MNIST-sized data on a 2-core CPU.

    AdamW lr 2e-3, one epoch (a fraction of it for the larger variants), validation at mid-epoch and at the end,
    the paper's drop path per variant.

    Args:
        variant: a MogaNet variant or alias ('xtiny', 'xt', 'small', ...).

    Returns:
        The `RunConfig`; change its fields before calling `fit`.
    """
    v = resolve_variant(variant)
    cfg = RunConfig()
    cfg.model = ModelConfig(name=f'moganet_{v}', drop_path_rate=_DROP_PATH[v])
    cfg.optim = OptimConfig(lr=2e-3, weight_decay=0.05, warmup_epochs=0.1)
    # The budget of `python -m moga_lab.fit --variant small` on 2 CPU cores is 15 minutes: small trains at
    # ~35 images/s with the stride-2 small-image stem, so its default is one epoch over a third of the 55k
    # training images (~12 min here); the lighter variants get a full epoch.
    budget = dict(xtiny=1.0, tiny=1.0, small=0.33, base=0.2, large=0.1, xlarge=0.05)[v]
    # validated at mid-epoch and at the end, so the learning curve shows two points of the one epoch
    cfg.trainer = TrainerConfig(epochs=1, limit_train_batches=budget, val_check_interval=0.5)
    return cfg
