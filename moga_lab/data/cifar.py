"""CIFAR-10 / CIFAR-100 from the standard python-pickle batches on disk (``cifar-10-batches-py``)."""
import os
import pickle
from typing import Any, Dict, Optional

import numpy as np
import torch

from moga_lab.data.base import ClassificationDataModule, DataError, DatasetInfo, TensorImageDataset

__all__ = ['CIFARDataModule']

_SPEC: Dict[int, Dict[str, Any]] = {
    10: dict(folder='cifar-10-batches-py', train=[f'data_batch_{i}' for i in range(1, 6)], test=['test_batch'],
             label='labels', meta=('batches.meta', 'label_names'),
             mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
    100: dict(folder='cifar-100-python', train=['train'], test=['test'], label='fine_labels',
              meta=('meta', 'fine_label_names'), mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762)),
}


class CIFARDataModule(ClassificationDataModule):
    """CIFAR-10 / CIFAR-100 from the python version of the dataset on disk.

    Args:
        data_dir: the extracted ``cifar-10-batches-py`` / ``cifar-100-python`` folder or its parent.
        num_classes: 10 or 100.
        download: fetch the archive with torchvision into ``data_dir`` (opt-in; nothing downloads otherwise).
        **kwargs: `ClassificationDataModule`'s arguments.

    Raises:
        DataError: no ``data_dir``, or the files are not there.
    """

    def __init__(self, data_dir: Optional[str] = None, num_classes: int = 10, download: bool = False, **kwargs: Any):
        if num_classes not in _SPEC:
            raise ValueError(f'CIFAR num_classes={num_classes} is not supported; accepted: 10, 100')
        if not data_dir:
            raise DataError(f'CIFAR-{num_classes} needs --data-dir: the folder holding {_SPEC[num_classes]["folder"]} '
                            f'(python version of the dataset), or add --download to fetch it')
        super().__init__(data_dir=data_dir, **kwargs)
        self.spec = _SPEC[num_classes]
        self.download = download
        self.cifar_classes = num_classes
        names = self._class_names()
        self.info = DatasetInfo(f'cifar{num_classes}', num_classes, 3, 32, self.spec['mean'], self.spec['std'], names)

    def _folder(self) -> str:
        for candidate in (os.path.join(self.data_dir, self.spec['folder']), self.data_dir):
            if os.path.isfile(os.path.join(candidate, self.spec['test'][0])):
                return candidate
        if self.download:
            from torchvision import datasets
            cls = datasets.CIFAR10 if self.cifar_classes == 10 else datasets.CIFAR100
            cls(self.data_dir, train=True, download=True)
            return os.path.join(self.data_dir, self.spec['folder'])
        raise DataError(f'CIFAR-{self.cifar_classes} not found: looked for {self.spec["test"][0]} in {self.data_dir} and '
                        f'{os.path.join(self.data_dir, self.spec["folder"])}; extract the python version of the '
                        f'dataset there, or pass --download to fetch it')

    def _unpickle(self, path: str) -> dict:
        try:
            with open(path, 'rb') as f:
                return pickle.load(f, encoding='latin1')
        except (OSError, pickle.UnpicklingError, EOFError) as error:
            raise DataError(f'cannot read CIFAR batch {path}: {error}') from None

    def _class_names(self):
        try:
            folder = self._folder()
        except DataError:
            return tuple(str(i) for i in range(self.cifar_classes))
        meta_file, key = self.spec['meta']
        meta_path = os.path.join(folder, meta_file)
        return tuple(self._unpickle(meta_path)[key]) if os.path.isfile(meta_path) else tuple(
            str(i) for i in range(self.cifar_classes))

    def _read(self, files) -> TensorImageDataset:
        folder = self._folder()
        images, labels = [], []
        for name in files:
            batch = self._unpickle(os.path.join(folder, name))
            try:
                images.append(np.asarray(batch['data'], dtype=np.uint8).reshape(-1, 3, 32, 32))
                labels.extend(batch[self.spec['label']])
            except (KeyError, ValueError) as error:
                raise DataError(f'CIFAR batch {os.path.join(folder, name)} is malformed: {error}') from None
        x = torch.from_numpy(np.concatenate(images).transpose(0, 2, 3, 1).copy())
        return TensorImageDataset(x, torch.as_tensor(labels))

    def _load_train(self):
        return self._read(self.spec['train'])

    def _load_test(self):
        return self._read(self.spec['test'])
