"""A small learnable synthetic set for tests: each class is a fixed random pattern plus noise."""
from typing import Any

import torch

from moga_lab.data.base import ClassificationDataModule, DatasetInfo, TensorImageDataset

__all__ = ['SyntheticDataModule']


class SyntheticDataModule(ClassificationDataModule):
    """Images generated in memory, each class a fixed random pattern plus Gaussian noise: learnable in a few steps,
    for tests and smoke runs without data.

    Args:
        num_classes: number of classes.
        in_chans: image channels.
        image_size: image side in pixels.
        train_size: training images (validation is carved from them).
        test_size: test images.
        noise: std of the Gaussian noise added to each class pattern.
        seed: seed of the patterns and the noise.
        **kwargs: `ClassificationDataModule`'s arguments (``data_dir`` is ignored).
    """

    def __init__(self, num_classes: int = 4, in_chans: int = 1, image_size: int = 16, train_size: int = 256,
                 test_size: int = 64, noise: float = 0.35, seed: int = 0, **kwargs: Any):
        kwargs.setdefault('val_size', max(1, train_size // 8))
        kwargs.setdefault('augment', False)
        super().__init__(**{k: v for k, v in kwargs.items() if k != 'data_dir'})
        self.info = DatasetInfo('synthetic', num_classes, in_chans, image_size, (0.5,) * in_chans, (0.25,) * in_chans,
                                tuple(f'class{i}' for i in range(num_classes)))
        self.sizes = (train_size, test_size)
        self.noise = noise
        self.seed = seed

    def _make(self, n: int, offset: int) -> TensorImageDataset:
        g = torch.Generator().manual_seed(self.seed)
        c, s = self.info.in_chans, self.info.image_size
        templates = torch.rand(self.info.num_classes, s, s, c, generator=g)
        g.manual_seed(self.seed + offset)
        labels = torch.arange(n) % self.info.num_classes
        x = templates[labels] + self.noise * torch.randn(n, s, s, c, generator=g)
        return TensorImageDataset((x.clamp(0, 1) * 255).round().to(torch.uint8), labels)

    def _load_train(self):
        return self._make(self.sizes[0], 1)

    def _load_test(self):
        return self._make(self.sizes[1], 2)
