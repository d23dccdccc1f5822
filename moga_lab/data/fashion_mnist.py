"""Fashion-MNIST from the IDX files of Debian's ``dataset-fashion-mnist`` (the default dataset)."""
import gzip
import os
from typing import Any, Optional

import numpy as np
import torch

from moga_lab.data.base import ClassificationDataModule, DataError, DatasetInfo, TensorImageDataset

__all__ = ['FashionMNISTDataModule', 'read_idx', 'DEFAULT_FASHION_MNIST_DIR', 'FASHION_MNIST_CLASSES']

DEFAULT_FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'
FASHION_MNIST_CLASSES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker',
                         'Bag', 'Ankle boot')
_HOW_TO_GET = ("install Debian's package (apt-get install dataset-fashion-mnist, which puts the files in "
               f"{DEFAULT_FASHION_MNIST_DIR}) or pass --data-dir DIR holding train-images-idx3-ubyte[.gz], "
               "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]")


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic 0x00 0x00 dtype ndim, big-endian dims, data."""
    opener = gzip.open if path.endswith('.gz') else open
    try:
        with opener(path, 'rb') as f:
            data = f.read()
    except (OSError, EOFError) as error:
        raise DataError(f'cannot read IDX file {path}: {error}') from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f'{path} is not an unsigned-byte IDX file (bad magic number {data[:4].hex()})')
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f'{path} is truncated: header says {dims} ({int(np.prod(dims))} bytes), found {body.size}')
    return body.reshape(dims)


class FashionMNISTDataModule(ClassificationDataModule):
    """Fashion-MNIST: 60k training images (minus ``val_size`` held out with a fixed seed) / 10k test, 28x28 grey,
    10 classes, read from the IDX files of Debian's ``dataset-fashion-mnist``.

    Args:
        data_dir: a folder holding the four IDX files (``.gz`` or not); None = `DEFAULT_FASHION_MNIST_DIR`.
        **kwargs: `ClassificationDataModule`'s arguments (batch size, validation size, image size, ...).

    Raises:
        DataError: the files are missing (the message names the folder and ``apt-get install dataset-fashion-mnist``).

    Example:
        ```python
        dm = FashionMNISTDataModule(batch_size=64, image_size=56)    # resized to 56 px
        dm.setup('fit')
        x, y = next(iter(dm.train_dataloader()))                     # [64, 1, 56, 56], [64]
        ```
    """

    info = DatasetInfo('fashion-mnist', 10, 1, 28, (0.2860,), (0.3530,), FASHION_MNIST_CLASSES)

    def __init__(self, data_dir: Optional[str] = None, **kwargs: Any):
        super().__init__(data_dir=data_dir or DEFAULT_FASHION_MNIST_DIR, **kwargs)

    def _find(self, stem: str) -> str:
        for name in (stem, stem + '.gz'):
            path = os.path.join(self.data_dir, name)
            if os.path.isfile(path):
                return path
        raise DataError(f'Fashion-MNIST file {stem}[.gz] not found in {self.data_dir}: {_HOW_TO_GET}')

    def _read(self, prefix: str) -> TensorImageDataset:
        if not os.path.isdir(self.data_dir):
            raise DataError(f'Fashion-MNIST directory {self.data_dir} does not exist: {_HOW_TO_GET}')
        images = read_idx(self._find(f'{prefix}-images-idx3-ubyte'))
        labels = read_idx(self._find(f'{prefix}-labels-idx1-ubyte'))
        if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
            raise DataError(f'Fashion-MNIST {prefix} files in {self.data_dir} are malformed: images '
                            f'{images.shape}, labels {labels.shape} (expected [N, 28, 28] and [N])')
        if labels.max() >= 10:
            raise DataError(f'Fashion-MNIST {prefix} labels in {self.data_dir} go up to {labels.max()} (expected 0-9)')
        return TensorImageDataset(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)))

    def _load_train(self):
        return self._read('train')

    def _load_test(self):
        return self._read('t10k')
