"""One training run: DataModule + ImageClassifier + Trainer from a RunConfig, artefacts in ``run_dir``.

``run_dir`` ends up holding ``config.yaml`` (the resolved config), ``last.ckpt`` (written every
``checkpoint_every_n_steps`` steps and at each epoch end, atomically by Lightning), ``best.ckpt`` (best
``val/acc1``), ``metrics.csv``, ``learning_curve.png`` and ``results.yaml`` (test top-1/top-5; wall time of the
training loop over all resumed segments plus the test; training images/s of the last segment).
"""
import os
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint, Timer, TQDMProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException

from moga_lab.data import ClassificationDataModule, create_datamodule
from moga_lab.models.fuse import NATIVE_BF16, onednn_bf16
from moga_lab.utils.runtime import describe_machine
from moga_lab.training.config import RunConfig
from moga_lab.training.loggers import build_loggers, log_figure, log_final_metrics
from moga_lab.training.module import ImageClassifier
from moga_lab.training.report import atomic_write_text, merge_metrics, plot_learning_curve

__all__ = ['fit', 'prepare', 'build_datamodule', 'FitResult']


@dataclass
class FitResult:
    """What `fit` returns.

    Attributes:
        run_dir: the run directory (absolute).
        test: the test metrics (``test/acc1``, ``test/acc5`` as fractions); empty when ``test=False``.
        global_step: optimizer steps taken over all resumed segments.
        seconds: training loop of all resumed segments (Lightning's Timer) plus the test.
        train_images_per_second: training images per second of this segment, validation excluded.
    """
    run_dir: str
    test: Dict[str, float]
    global_step: int
    seconds: float                   # training loop of all resumed segments (Lightning's Timer) + the test
    train_images_per_second: float   # this segment's


def build_datamodule(cfg: RunConfig) -> ClassificationDataModule:
    """The LightningDataModule the data section of ``cfg`` names (see `moga_lab.data.create_datamodule`).

    Args:
        cfg: the run's configuration.

    Returns:
        A `moga_lab.data.ClassificationDataModule`, not yet set up.
    """
    d = cfg.data
    kwargs: Dict[str, Any] = dict(data_dir=d.data_dir, batch_size=d.batch_size, num_workers=d.num_workers,
                                  augment=d.augment, reprob=d.reprob)
    if d.val_size is not None:
        kwargs['val_size'] = d.val_size
    if d.image_size:
        kwargs['image_size'] = d.image_size
    name = d.name.lower()
    if name.startswith('cifar'):
        kwargs['download'] = d.download
    if name == 'imagefolder' and d.auto_augment is not None:
        kwargs['auto_augment'] = d.auto_augment
    return create_datamodule(d.name, **kwargs)


class _ThroughputClock(L.Callback):
    """Training images per second, excluding validation (measured on rank 0)."""

    def __init__(self):
        self.images = 0
        self.seconds = 0.0
        self._start = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self.images += len(batch[0]) * trainer.world_size
            self._start = None

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.is_global_zero and self.seconds:
            for logger in trainer.loggers:
                logger.log_metrics({'train/images_per_second': self.images / self.seconds}, step=trainer.global_step)


def _stopped_by_sigterm(trainer: L.Trainer, run_dir: str, every: int):
    """Exit with status 143 (128 + SIGTERM). Lightning ends a fit stopped by SIGTERM with ``SystemExit()``, i.e. exit
    status 0, which a job runner (Slurm, submitit, ``moga-study``) would take for a finished run."""
    last = os.path.join(run_dir, 'last.ckpt')
    state = (f'{last} is at most {every} steps older; continue with --resume --run-dir {run_dir}'
             if os.path.isfile(last) else 'no last.ckpt yet: a new run starts from step 0')
    sys.stderr.write(f'stopped by SIGTERM at step {trainer.global_step}; {state}\n')
    raise SystemExit(128 + signal.SIGTERM)


def _flat(d: Dict[str, Any], prefix: str = '') -> Dict[str, Any]:
    """{'model': {'name': ..}} -> {'model.name': ..}; lists as text (TensorBoard's HParams view takes scalars)."""
    out: Dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f'{prefix}{k}.'))
        else:
            out[f'{prefix}{k}'] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


def _log_every(cfg: RunConfig, dm: L.LightningDataModule) -> int:
    """``log_every_n_steps``, lowered to the epoch's length: Lightning logs step metrics every n global steps and warns
    when an epoch is shorter, so a short run (tests, ``--limit-train-batches``) would log no training step at all."""
    t = cfg.trainer
    train_set, batch = getattr(dm, 'train_set', None), getattr(dm, 'batch_size', None)  # (any DataModule `prepared`)
    n = len(train_set) // batch if train_set is not None and batch else t.log_every_n_steps
    limit = t.limit_train_batches
    if limit is not None:  # Lightning's rule: an int (or a float > 1) counts batches, a float <= 1 is a fraction
        n = min(n, int(limit)) if isinstance(limit, int) or limit > 1 else int(n * limit)
    return max(1, min(t.log_every_n_steps, n))


def _warn_emulated_bf16(precision: str, accelerator: str) -> None:
    """bf16 on a CPU without native bfloat16 runs emulated: it trains, many times slower than float32, so say so."""
    on_cpu = accelerator == 'cpu' or (accelerator == 'auto' and not torch.cuda.is_available())
    if str(precision).startswith('bf16') and on_cpu and not onednn_bf16():
        warnings.warn(f'precision {precision!r} on a CPU without {NATIVE_BF16}: autocast emulates it here, '
                      'many times slower than float32; '
                      "use --precision 32-true on this machine", UserWarning, stacklevel=3)


def _trainer(cfg: RunConfig, run_dir: str, callbacks, log_every: Optional[int] = None, **overrides) -> L.Trainer:
    t = cfg.trainer
    _warn_emulated_bf16(overrides.get('precision', t.precision), overrides.get('accelerator', t.accelerator))
    kwargs = dict(
        max_epochs=t.epochs, accelerator=t.accelerator, devices=t.devices, strategy=t.strategy,
        precision=t.precision, default_root_dir=run_dir, callbacks=callbacks,
        logger=build_loggers(t.loggers, run_dir, f'{cfg.model.name} ({os.path.basename(run_dir)})', t.tracking_uri),
        log_every_n_steps=log_every or t.log_every_n_steps,
        gradient_clip_val=cfg.optim.grad_clip, enable_progress_bar=t.progress_bar, enable_model_summary=False,
        deterministic=False, num_sanity_val_steps=0,
    )
    if t.limit_train_batches is not None:
        kwargs['limit_train_batches'] = t.limit_train_batches
    for key in ('limit_val_batches', 'limit_test_batches'):
        if getattr(t, key) is not None:
            kwargs[key] = getattr(t, key)
    if t.val_check_interval is not None:
        kwargs['val_check_interval'] = t.val_check_interval
    kwargs.update(overrides)
    return L.Trainer(**kwargs)


def prepare(cfg: RunConfig) -> Tuple[ClassificationDataModule, ImageClassifier]:
    """The DataModule (set up, so missing data fails here) and the LightningModule (bad model options fail here).

    Args:
        cfg: the run's configuration; seeds everything with ``cfg.trainer.seed`` first.

    Returns:
        ``(datamodule, module)``, ready for your own ``lightning.Trainer``.

    Raises:
        moga_lab.data.DataError: the data is missing or unreadable (the message says where it looked).
        ConfigError: a config value that is not accepted (`RunConfig.validate`).
        ValueError: a model option that is not accepted.
    """
    cfg.validate()
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    dm = build_datamodule(cfg)
    dm.setup('fit')
    info = dm.info
    module = ImageClassifier(cfg, num_classes=info.num_classes, in_chans=info.in_chans,
                             image_size=dm.image_size, class_names=list(info.class_names), mean=list(info.mean),
                             std=list(info.std))
    return dm, module


def _callbacks(cfg: RunConfig, run_dir: str, dm):
    """best.ckpt (by val/acc1), last.ckpt every n steps, the images/s clock, Lightning's Timer, the progress bar and
    the interaction-curve callback when asked for."""
    best = ModelCheckpoint(dirpath=run_dir, filename='best', monitor='val/acc1', mode='max', save_top_k=1,
                           auto_insert_metric_name=False, enable_version_counter=False)
    periodic = ModelCheckpoint(dirpath=run_dir, every_n_train_steps=cfg.trainer.checkpoint_every_n_steps,
                               save_top_k=0, save_last=True)
    clock = _ThroughputClock()
    timer = Timer(verbose=False)  # its elapsed training time is saved in checkpoints and continues on resume
    callbacks = [best, periodic, clock, timer]
    if cfg.trainer.progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=10))
    if cfg.trainer.interaction_every:
        from moga_lab.training.callbacks import InteractionCurveCallback
        n = min(cfg.trainer.interaction_images, len(dm.val_set))
        images, labels = zip(*(dm.val_set[k] for k in range(n)))
        callbacks.append(InteractionCurveCallback(torch.stack(images), torch.as_tensor(labels),
                                                  every_n_epochs=cfg.trainer.interaction_every, run_dir=run_dir))
    return best, clock, timer, callbacks


def _write_results(cfg: RunConfig, run_dir: str, trainer, results: Dict[str, float], ips: float,
                   total_seconds: float, seconds: float) -> None:
    """The learning curve, the loggers' final metrics and ``results.yaml`` (rank 0)."""
    metrics = merge_metrics(run_dir)
    if metrics is not None:
        curve_png = os.path.join(run_dir, 'learning_curve.png')
        plot_learning_curve(metrics, curve_png, title=f'{cfg.model.name} on {cfg.data.name}')
        log_figure(trainer.loggers, 'learning_curve', curve_png, step=int(trainer.global_step))
    final = {k: v for k, v in results.items()}
    if metrics is not None and 'val/acc1' in metrics:
        final['val/acc1_best'] = float(metrics['val/acc1'].max())
    final['train/images_per_second'] = ips
    log_final_metrics(trainer.loggers, _flat(cfg.to_dict()), final)
    segments = int(metrics['segment'].max()) + 1 if metrics is not None else 1
    summary = dict(model=cfg.model.name, data=cfg.data.name, lr=cfg.optim.lr, seed=cfg.trainer.seed,
                   global_step=int(trainer.global_step),
                   train_images_per_second=round(ips, 1), wall_seconds=round(total_seconds, 1),
                   segments=segments, last_segment_wall_seconds=round(seconds, 1),
                   # which machine and threads ran (the last segment): a study's runs may come from several
                   machine=describe_machine(), threads=torch.get_num_threads(), **results)
    if 'val/acc1_best' in final:
        summary['val/acc1_best'] = final['val/acc1_best']
    atomic_write_text(os.path.join(run_dir, 'results.yaml'), yaml.safe_dump(summary, sort_keys=False))


def fit(cfg: RunConfig, resume: bool = False, test: bool = True,
        prepared: Optional[Tuple[ClassificationDataModule, ImageClassifier]] = None) -> FitResult:
    """Train, test the best checkpoint on the test set, and write the run's artefacts.

    The run directory receives ``config.yaml``, ``last.ckpt`` (periodically and at the end, atomically),
    ``best.ckpt`` (best ``val/acc1``), ``metrics.csv``, ``learning_curve.png`` and ``results.yaml``.

    Args:
        cfg: the run's configuration (`small_data_recipe`, `paper_recipe`, or your own `RunConfig`).
        resume: continue from ``<run_dir>/last.ckpt`` (FileNotFoundError when there is none).
        test: evaluate the best checkpoint on the test set after training.
        prepared: ``(datamodule, module)`` from `prepare`, to skip building them again.

    Returns:
        A `FitResult`.

    Raises:
        NonFiniteLossError: the loss became NaN or inf (the message names the step and learning rate).

    Example:
        ```python
        cfg = small_data_recipe('xtiny')
        cfg.trainer.epochs, cfg.trainer.run_dir = 3, 'runs/xt3'
        result = fit(cfg)
        print(result.test['test/acc1'])
        ```
    """
    run_dir = os.path.abspath(cfg.trainer.run_dir)
    last = os.path.join(run_dir, 'last.ckpt')
    if resume and not os.path.isfile(last):
        raise FileNotFoundError(f'--resume: no checkpoint to resume from at {last}')
    os.makedirs(run_dir, exist_ok=True)
    dm, module = prepared or prepare(cfg)
    if int(os.environ.get('LOCAL_RANK', 0)) == 0:
        atomic_write_text(os.path.join(run_dir, 'config.yaml'), cfg.to_yaml())
    best, clock, timer, callbacks = _callbacks(cfg, run_dir, dm)
    trainer = _trainer(cfg, run_dir, callbacks, log_every=_log_every(cfg, dm))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='.*does not have many workers.*')
        warnings.filterwarnings('ignore', message='.*Checkpoint directory .* exists and is not empty.*')
        warnings.filterwarnings('ignore', message='.*treespec, LeafSpec.*')
        try:
            trainer.fit(module, datamodule=dm, ckpt_path=last if resume else None)
        except SIGTERMException:
            _stopped_by_sigterm(trainer, run_dir, cfg.trainer.checkpoint_every_n_steps)
        # last.ckpt at the very end too (the periodic callback only fires every n steps)
        trainer.save_checkpoint(last)
        # read now: trainer.test(ckpt_path=...) restores the Timer's state too, from best.ckpt
        train_seconds = timer.time_elapsed('train')
        results: Dict[str, float] = {}
        if test:
            ckpt = best.best_model_path if best.best_model_path and os.path.isfile(best.best_model_path) else None
            try:
                out = trainer.test(module, datamodule=dm, ckpt_path=ckpt, weights_only=True)
            except SIGTERMException:
                _stopped_by_sigterm(trainer, run_dir, cfg.trainer.checkpoint_every_n_steps)
            results = {k: float(v) for k, v in (out[0] if out else {}).items()}
    seconds = time.perf_counter() - start
    total_seconds = train_seconds + timer.time_elapsed('test')
    ips = clock.images / clock.seconds if clock.seconds else 0.0
    if trainer.is_global_zero:
        _write_results(cfg, run_dir, trainer, results, ips, total_seconds, seconds)
    return FitResult(run_dir, results, int(trainer.global_step), total_seconds, ips)
