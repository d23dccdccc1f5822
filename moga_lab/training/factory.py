"""Build the network a `ModelConfig` names (see `moga_lab.models.factory`)."""
import dataclasses

import torch.nn as nn

from moga_lab.models.factory import BASELINE_PREFIXES, SMALL_BASELINES, SMALL_IMAGE_MAX, create_classifier, is_moganet
from moga_lab.training.config import ModelConfig

__all__ = ['build_model', 'SMALL_IMAGE_MAX', 'BASELINE_PREFIXES', 'SMALL_BASELINES', 'is_moganet']


def build_model(cfg: ModelConfig, num_classes: int, in_chans: int, image_size: int) -> nn.Module:
    """The classifier a `ModelConfig` describes (see `moga_lab.models.create_classifier`).

    Args:
        cfg: the model section of a run's configuration.
        num_classes: classifier size.
        in_chans: input channels.
        image_size: input side in pixels (decides the small-image stems).

    Returns:
        The network, [B, in_chans, image_size, image_size] -> [B, num_classes].
    """
    return create_classifier(num_classes=num_classes, in_chans=in_chans, image_size=image_size,
                             **dataclasses.asdict(cfg))
