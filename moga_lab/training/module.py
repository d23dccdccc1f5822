"""The LightningModule for image classification: any model by name, the paper's recipe pieces from timm."""
import math
import warnings
from typing import Any, Dict, Optional, Sequence, Union

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from moga_lab.training.config import RunConfig
from moga_lab.training.factory import build_model

__all__ = ['ImageClassifier', 'NonFiniteLossError']


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or inf; the message names the step and learning rate."""
    pass


def _accuracy(num_classes: int) -> MetricCollection:
    # ImageNet-style accuracy is micro-averaged (torchmetrics defaults to macro)
    return MetricCollection({
        'acc1': MulticlassAccuracy(num_classes, top_k=1, average='micro'),
        'acc5': MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average='micro'),
    })


class ImageClassifier(L.LightningModule):
    """Trains ``config['model']['name']`` (MogaNet or a timm ConvNeXt / Swin) on [B, C, H, W] images.

    Hyper-parameters are plain types (the resolved `RunConfig` as a dict plus the data's shape), so
    checkpoints reload with ``weights_only=True`` and ``ImageClassifier.load_from_checkpoint`` rebuilds the
    exact network. Logs ``train/loss``, ``lr``, ``val/loss``, ``val/acc1``, ``val/acc5`` (and ``val_ema/*``
    with EMA), ``test/acc1``, ``test/acc5``.

    Args:
        config: the resolved `RunConfig` (or its nested dict, ``cfg.to_dict()``, as checkpoints hold it); unknown keys
            are refused (`moga_lab.training.config.ConfigError`).
        num_classes: classifier size.
        in_chans: input channels.
        image_size: input side in pixels (decides the small-image stems).
        class_names: names of the classes, kept in the checkpoint for the analysis tools.
        mean: the data's normalisation mean per channel, kept in the checkpoint.
        std: the data's normalisation std per channel, kept in the checkpoint.

    Example:
        ```python
        dm, module = prepare(small_data_recipe('xtiny'))          # or build both yourself:
        module = ImageClassifier(cfg, num_classes=10, in_chans=1, image_size=28)
        lightning.Trainer(max_epochs=1).fit(module, dm)
        ```
    """

    def __init__(self, config: Union[RunConfig, Dict[str, Any]], num_classes: int, in_chans: int, image_size: int,
                 class_names: Optional[Sequence[str]] = None, mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None):
        super().__init__()
        # saved as a plain nested dict (weights_only checkpoints), read back through the typed RunConfig
        config = config.to_dict() if isinstance(config, RunConfig) else RunConfig.from_dict(config).to_dict()
        self.save_hyperparameters()
        self.cfg = RunConfig.from_dict(config)
        self.model = build_model(self.cfg.model, num_classes, in_chans, image_size)
        self.model.to(memory_format=torch.channels_last)
        opt = self.cfg.optim
        self.mixup = None
        if opt.mixup > 0 or opt.cutmix > 0:
            self.mixup = Mixup(mixup_alpha=opt.mixup, cutmix_alpha=opt.cutmix, label_smoothing=opt.label_smoothing,
                               num_classes=num_classes)
            self.train_criterion: nn.Module = SoftTargetCrossEntropy()
        else:
            self.train_criterion = nn.CrossEntropyLoss(label_smoothing=opt.label_smoothing)
        self.ema = ModelEmaV3(self.model, decay=opt.ema_decay) if opt.ema_decay else None
        self.val_metrics = _accuracy(num_classes).clone(prefix='val/')
        self.val_ema_metrics = _accuracy(num_classes).clone(prefix='val_ema/') if self.ema else None
        self.test_metrics = _accuracy(num_classes).clone(prefix='test/')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last))

    def on_fit_start(self):
        if self.ema is not None:
            # timm's EMA copy stays in eval mode (it is only ever evaluated), and Lightning warns about every module in
            # eval mode when training starts. Silence exactly the EMA's count: a model module left in eval still warns.
            n = sum(not m.training for m in self.ema.modules())
            warnings.filterwarnings('ignore', message=rf'Found {n} module\(s\) in eval mode at the start of training')

    # ---- steps -----------------------------------------------------------------------------------
    def on_train_batch_start(self, batch, batch_idx):
        # the run ends after exactly `estimated_stepping_batches` optimizer steps, also when a resumed
        # epoch replays batches that were already seen before the interruption
        if self.global_step >= self.trainer.estimated_stepping_batches:
            return -1

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.mixup is not None:
            x, y = self.mixup(x, y)
        loss = self.train_criterion(self(x), y)
        if not torch.isfinite(loss):
            lr = self.trainer.optimizers[0].param_groups[0]['lr']
            raise NonFiniteLossError(
                f'training loss is {loss.item()} at step {self.global_step} (epoch {self.current_epoch}, '
                f'lr {lr:.3g}); lower --lr, keep gradient clipping on, or use --precision 32-true')
        self.log('train/loss', loss, prog_bar=True, on_step=True, on_epoch=True)
        self.log('lr', self.trainer.optimizers[0].param_groups[0]['lr'], on_step=True, on_epoch=False)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.ema is not None:
            self.ema.update(self.model, step=self.global_step)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log('val/loss', F.cross_entropy(logits, y), prog_bar=False, sync_dist=True)
        self.val_metrics.update(logits, y)
        self.log_dict(self.val_metrics, prog_bar=True)
        if self.ema is not None:
            self.val_ema_metrics.update(self.ema.module(x.contiguous(memory_format=torch.channels_last)), y)
            self.log_dict(self.val_ema_metrics)

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.test_metrics.update(self(x), y)
        self.log_dict(self.test_metrics, prog_bar=True)

    def predict_step(self, batch, batch_idx):
        return self(batch[0]).softmax(-1)

    # ---- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self):
        opt = self.cfg.optim
        # AdamW, no weight decay on norms, biases and (via model.no_weight_decay) layer/element scales
        optimizer = create_optimizer_v2(self.model, 'adamw', lr=opt.lr, weight_decay=opt.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = max(1, self.trainer.max_epochs or 1)
        per_epoch = max(1, math.ceil(total / epochs))
        scheduler, _ = create_scheduler_v2(
            optimizer, sched='cosine', num_epochs=epochs, warmup_epochs=opt.warmup_epochs, min_lr=opt.min_lr,
            warmup_lr=opt.warmup_lr, step_on_epochs=False, updates_per_epoch=per_epoch)
        return {'optimizer': optimizer, 'lr_scheduler': {'scheduler': scheduler, 'interval': 'step'}}

    def lr_scheduler_step(self, scheduler, metric):
        # timm schedulers are stepped by update count (Lightning only knows torch's API)
        scheduler.step_update(num_updates=self.global_step)
