"""Load a classifier trained by ``moga_lab.fit`` with what analysis needs to feed it images."""
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .config import RunConfig
from .module import ImageClassifier

__all__ = ['TrainedClassifier', 'load_classifier', 'load_classifiers', 'load_eval_images']


@dataclass
class TrainedClassifier:
    model: nn.Module          # the bare network, eval mode
    name: str                 # a readable label, e.g. moganet_xtiny (best.ckpt)
    config: RunConfig
    num_classes: int
    in_chans: int
    image_size: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    class_names: Tuple[str, ...]


def load_classifier(path: str, label: Optional[str] = None) -> TrainedClassifier:
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint {path!r} does not exist')
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # noqa: BLE001
        raise ValueError(f'cannot read checkpoint {path!r}: {error.__class__.__name__}: {error}') from None
    if not isinstance(ckpt, dict) or 'config' not in (ckpt.get('hyper_parameters') or {}):
        raise ValueError(f'{path} is not a checkpoint written by moga_lab.fit (no hyper_parameters.config); '
                         f'for plain MogaNet weights use moga_lab.models.load_checkpoint')
    module = ImageClassifier.load_from_checkpoint(path, map_location='cpu', weights_only=True)
    hp = module.hparams
    cfg = RunConfig.from_dict(hp.config)
    model = module.model.eval()
    n = int(hp.num_classes)
    return TrainedClassifier(
        model=model, name=label or cfg.model.name, config=cfg, num_classes=n, in_chans=int(hp.in_chans),
        image_size=int(hp.image_size), mean=tuple(hp.mean or ()), std=tuple(hp.std or ()),
        class_names=tuple(hp.class_names or [str(i) for i in range(n)]))


def load_classifiers(paths: Sequence[str], labels: Optional[Sequence[str]] = None) -> List[TrainedClassifier]:
    """Several fit checkpoints that must see the same images (same channels, size, classes, normalisation);
    names come from ``labels`` or the model names (made unique with the run folder when two clash)."""
    labels = list(labels or [])
    if labels and len(labels) != len(paths):
        raise ValueError(f'{len(labels)} --label for {len(paths)} --checkpoint; give one per checkpoint')
    models = [load_classifier(p, labels[k] if labels else None) for k, p in enumerate(paths)]
    names = [m.name for m in models]
    if len(set(names)) < len(names):
        for m, p in zip(models, paths):
            m.name = f'{m.name} ({os.path.basename(os.path.dirname(os.path.abspath(p)))})'
    ref = models[0]
    for m in models[1:]:
        if (m.in_chans, m.image_size, m.num_classes, m.mean, m.std) != (ref.in_chans, ref.image_size, ref.num_classes,
                                                                        ref.mean, ref.std):
            raise ValueError(f'{m.name} was trained on other inputs than {ref.name} (channels, size, classes or '
                             f'normalisation differ): they cannot be compared on the same images')
    return models


def load_eval_images(trained: TrainedClassifier, num_images: int, data: Optional[str] = None,
                     data_dir: Optional[str] = None, seed: int = 0):
    """``num_images`` test images (normalised as in training) drawn with ``seed``, their labels and ids."""
    from .run import build_datamodule
    cfg = RunConfig.from_dict(trained.config.to_dict())
    if data:
        cfg.data.name = data
    if data_dir:
        cfg.data.data_dir = data_dir
    dm = build_datamodule(cfg)
    dm.setup('test')
    test = dm.test_set
    if num_images < 1 or num_images > len(test):
        raise ValueError(f'--num-images={num_images} must be in 1..{len(test)} (the test set size)')
    ids = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:num_images].tolist()
    images, labels = zip(*(test[i] for i in ids))
    return torch.stack(images), torch.as_tensor(labels), ids, dm.info
