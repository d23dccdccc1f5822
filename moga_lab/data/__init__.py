"""LightningDataModules: Fashion-MNIST (default), CIFAR-10/100, ImageFolder trees, synthetic."""
from typing import Any

from moga_lab.data.base import ClassificationDataModule, DataError, DatasetInfo, TensorImageDataset
from moga_lab.data.cifar import CIFARDataModule
from moga_lab.data.fashion_mnist import DEFAULT_FASHION_MNIST_DIR, FASHION_MNIST_CLASSES, FashionMNISTDataModule
from moga_lab.data.imagefolder import CorruptImageError, ImageFolderDataModule
from moga_lab.data.synthetic import SyntheticDataModule

DATASETS = ('fashion-mnist', 'cifar10', 'cifar100', 'imagefolder', 'synthetic')


def create_datamodule(name: str, **kwargs: Any) -> ClassificationDataModule:
    """A DataModule by name.

    Args:
        name: one of `DATASETS` (also 'fmnist', 'cifar-10', ...).
        **kwargs: the DataModule's arguments.

    Returns:
        The `ClassificationDataModule`, not yet set up.

    Raises:
        ValueError: an unknown name, naming the accepted ones.
    """
    key = str(name).lower().replace('_', '-')
    if key in ('fashion-mnist', 'fashionmnist', 'fmnist'):
        return FashionMNISTDataModule(**kwargs)
    if key in ('cifar10', 'cifar-10', 'cifar100', 'cifar-100'):
        return CIFARDataModule(num_classes=100 if '100' in key else 10, **kwargs)
    if key == 'imagefolder':
        return ImageFolderDataModule(**kwargs)
    if key == 'synthetic':
        return SyntheticDataModule(**kwargs)
    raise ValueError(f'unknown dataset {name!r}; accepted: {", ".join(DATASETS)}')


__all__ = ['ClassificationDataModule', 'DataError', 'DatasetInfo', 'TensorImageDataset', 'CIFARDataModule',
           'FashionMNISTDataModule', 'ImageFolderDataModule', 'SyntheticDataModule', 'CorruptImageError',
           'create_datamodule', 'DATASETS', 'DEFAULT_FASHION_MNIST_DIR', 'FASHION_MNIST_CLASSES']
