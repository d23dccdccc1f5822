"""Shared pieces of the classification DataModules: in-memory tensor datasets, split, loaders."""
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Tuple

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.transforms import v2

__all__ = ['DataError', 'DatasetInfo', 'TensorImageDataset', 'ClassificationDataModule', 'small_image_transforms']


class DataError(FileNotFoundError):
    """Data missing or malformed; the message says where we looked and how to get it."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset.

    Attributes:
        name: the dataset's name.
        num_classes: number of classes.
        in_chans: image channels.
        image_size: native image side in pixels.
        mean: normalisation mean per channel.
        std: normalisation std per channel.
        class_names: class names, index order.
        transform: the evaluation transform in words, as reports state it.
    """
    name: str
    num_classes: int
    in_chans: int
    image_size: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    class_names: Tuple[str, ...]
    transform: str = ''          # the eval transform, as reports state it


class TensorImageDataset(Dataset):
    """uint8 images held in memory -> (normalised float [C, H, W], label).

    Args:
        images: uint8 [N, H, W] or [N, H, W, C].
        labels: [N] class indices.
        transform: applied to each uint8 [C, H, W] image (None = returned as uint8).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Optional[Callable] = None):
        if images.ndim == 3:
            images = images.unsqueeze(-1)
        if images.ndim != 4 or len(images) != len(labels):
            raise ValueError(f'images {tuple(images.shape)} and labels {tuple(labels.shape)} do not match')
        self.images = images.permute(0, 3, 1, 2).contiguous()  # [N, C, H, W] uint8
        self.labels = labels.long()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        x = self.images[index]
        if self.transform is not None:
            x = self.transform(x)
        return x, self.labels[index]


def small_image_transforms(info: DatasetInfo, train: bool, image_size: int, hflip: bool = True,
                           crop_padding: int = 2, reprob: float = 0.) -> Callable:
    """uint8 [C, H, W] -> normalised float. Train: pad-and-crop + flip (the usual small-image recipe)."""
    ops = []
    if image_size != info.image_size:
        ops.append(v2.Resize(image_size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True))
    if train:
        if crop_padding:
            ops.append(v2.RandomCrop(image_size, padding=crop_padding, padding_mode='reflect'))
        if hflip:
            ops.append(v2.RandomHorizontalFlip())
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(info.mean, info.std)]
    if train and reprob > 0:
        from timm.data.random_erasing import RandomErasing
        ops.append(RandomErasing(reprob, mode='pixel', device='cpu'))
    return v2.Compose(ops)


class ClassificationDataModule(L.LightningDataModule):
    """The base of every DataModule here: train / validation / test loaders from in-memory or on-disk datasets.

    Subclasses set ``self.info`` (a `DatasetInfo`) and implement ``_load_train()`` / ``_load_test()`` (datasets with
    ``transform=None``) or override ``setup``. The validation split is carved from the training set with a fixed seed,
    so every run and every DDP rank sees the same split.

    Args:
        data_dir: the dataset's folder.
        batch_size: training images per device and step.
        eval_batch_size: validation / test batch; None = ``max(batch_size, 256)``.
        num_workers: DataLoader workers.
        val_size: training images held out for validation.
        image_size: resize to this side (bicubic); None = the native size.
        augment: pad-and-crop and horizontal flip for training.
        reprob: random-erasing probability.
        split_seed: seed of the validation split.
    """

    def __init__(self, data_dir: Optional[str] = None, batch_size: int = 128, eval_batch_size: Optional[int] = None,
                 num_workers: int = 0, val_size: int = 5000, image_size: Optional[int] = None, augment: bool = True,
                 reprob: float = 0., split_seed: int = 0):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f'batch_size={batch_size} must be >= 1')
        self.data_dir: str = data_dir or ''  # ('' = none given: each dataset says what it needs)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or max(batch_size, 256)
        self.num_workers = num_workers
        self.val_size = val_size
        self.augment = augment
        self.reprob = reprob
        self.split_seed = split_seed
        self._image_size = image_size
        self.train_set: Optional[Dataset] = None
        self.val_set: Optional[Dataset] = None
        self.test_set: Any = None

    # subclasses -----------------------------------------------------------------------------------
    info: DatasetInfo

    def _load_train(self) -> TensorImageDataset:
        raise NotImplementedError

    def _load_test(self) -> TensorImageDataset:
        raise NotImplementedError

    # shared ---------------------------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        """The size images are fed at (the ``image_size`` asked for, else the dataset's native size)."""
        return self._image_size or self.info.image_size

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return self.info.num_classes

    @property
    def in_chans(self) -> int:
        """Image channels."""
        return self.info.in_chans

    def transforms(self, train: bool) -> Callable:
        """uint8 [C, H, W] -> normalised float: pad-and-crop + flip when ``train`` and ``augment``."""
        return small_image_transforms(self.info, train and self.augment, self.image_size, reprob=self.reprob)

    def _split(self, n: int) -> Tuple[Sequence[int], Sequence[int]]:
        if not 0 <= self.val_size < n:
            raise ValueError(f'val_size={self.val_size} must be in [0, {n}) for {self.info.name} ({n} training images)')
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed)).tolist()
        return perm[self.val_size:], perm[:self.val_size]

    def setup(self, stage: Optional[str] = None):
        """Read the data once: train/val split (fixed ``split_seed``) for fit/validate, the test set for test/predict."""
        if stage in (None, 'fit', 'validate') and self.train_set is None:
            full = self._load_train()
            train_idx, val_idx = self._split(len(full))
            train_view = TensorImageDataset.__new__(TensorImageDataset)
            train_view.__dict__.update(full.__dict__, transform=self.transforms(train=True))
            val_view = TensorImageDataset.__new__(TensorImageDataset)
            val_view.__dict__.update(full.__dict__, transform=self.transforms(train=False))
            self.train_set = Subset(train_view, train_idx)
            self.val_set = Subset(val_view, val_idx)
        if stage in (None, 'test', 'predict') and self.test_set is None:
            self.test_set = self._load_test()
            self.test_set.transform = self.transforms(train=False)

    def _loader(self, dataset, train: bool) -> DataLoader:
        return DataLoader(
            dataset, batch_size=self.batch_size if train else self.eval_batch_size, shuffle=train,
            drop_last=train,  # timm's Mixup needs even batches
            num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self):
        """Shuffled training batches (``drop_last``: timm's Mixup needs even batches)."""
        return self._loader(self.train_set, True)

    def val_dataloader(self):
        """Validation batches of ``eval_batch_size``."""
        return self._loader(self.val_set, False)

    def test_dataloader(self):
        """Test batches of ``eval_batch_size``."""
        return self._loader(self.test_set, False)

    def predict_dataloader(self):
        """The test batches."""
        return self.test_dataloader()
