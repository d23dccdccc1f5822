"""Lightning callbacks: the interaction-strength curve on a fixed image set during training."""
import os
from typing import Optional, cast

import lightning as L
import pandas as pd
import torch
import torch.nn as nn

from moga_lab.analysis.curves import middle_order_share, strength_curve
from moga_lab.analysis.estimate import InteractionSettings, interaction_strength
from moga_lab.analysis.plots import plot_interaction_evolution
from moga_lab.utils.atomic import atomic_write_csv
from moga_lab.training.loggers import log_figure

__all__ = ['InteractionCurveCallback']


class InteractionCurveCallback(L.Callback):
    """Every ``every_n_epochs`` epochs (at the end of the epoch), compute the multi-order interaction curve of the model on
    ``images`` / ``labels`` (normalised [N, C, H, W] and [N]; the same images, pairs and contexts each time),
    log ``interaction/J_norm@<ratio>`` and ``interaction/middle_share``, and append the curve to
    ``<run_dir>/interaction_by_epoch.csv`` (plus a PNG of the curves by epoch). Runs on rank 0 only.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, every_n_epochs: int = 1,
                 settings: Optional[InteractionSettings] = None, run_dir: Optional[str] = None):
        if every_n_epochs < 1:
            raise ValueError(f'every_n_epochs={every_n_epochs} must be >= 1')
        self.images, self.labels = images, labels
        self.every = every_n_epochs
        self.settings = settings or InteractionSettings(num_pairs=8, num_contexts=8)
        self.run_dir = run_dir

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule):
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every:
            return
        if trainer.is_global_zero:
            model = cast(nn.Module, getattr(pl_module, 'model', pl_module))
            images = self.images.to(pl_module.device)
            frame = interaction_strength(model, images, self.labels, self.settings, model_name='model')
            curve = strength_curve(frame, num_bootstrap=200)
            curve.insert(0, 'epoch', trainer.current_epoch)
            curve.insert(1, 'step', trainer.global_step)
            share = middle_order_share(curve)['model']
            metrics = {f'interaction/J_norm@{r:g}': v for r, v in zip(curve.ratio, curve.J_norm)}
            metrics['interaction/middle_share'] = share
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
            run_dir = self.run_dir or trainer.default_root_dir
            path = os.path.join(run_dir, 'interaction_by_epoch.csv')
            old = pd.read_csv(path) if os.path.isfile(path) else None
            if old is not None:
                old = old[old.epoch != trainer.current_epoch]  # a resumed epoch replaces its row
            frame = curve if old is None else pd.concat([old, curve], ignore_index=True)
            atomic_write_csv(path, frame)
            png = os.path.join(run_dir, 'interaction_by_epoch.png')
            plot_interaction_evolution(frame, png)
            log_figure(trainer.loggers, 'interaction_by_epoch', png, step=trainer.global_step)
        trainer.strategy.barrier()
