"""ImageFolder trees (ImageNet layout: ``root/train/<class>/*.jpg``, ``root/val/<class>/*.jpg``) with timm's
train/eval transforms (RandAugment, random erasing, bicubic resize with crop_pct at eval)."""
import os
from typing import Any, Optional, Sequence

from PIL import Image, UnidentifiedImageError
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from torchvision import datasets

from moga_lab.data.base import ClassificationDataModule, DataError, DatasetInfo

__all__ = ['ImageFolderDataModule', 'CorruptImageError', 'load_rgb']


class CorruptImageError(DataError):
    """An image file that PIL cannot read; the message names the file."""
    pass


def load_rgb(path: str) -> Image.Image:
    """An image file as RGB; `CorruptImageError` naming the file when it cannot be read."""
    try:
        with open(path, 'rb') as f:
            img = Image.open(f)
            return img.convert('RGB')
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise CorruptImageError(f'corrupt or unreadable image {path}: {error}') from None


class ImageFolderDataModule(ClassificationDataModule):
    """An ImageFolder tree (ImageNet layout) with timm's train and eval transforms.

    ``data_dir`` holds ``train/`` and ``val/`` (and optionally ``test/``; else test = val) class folders or, for
    evaluation only, the class folders themselves. ``val_size`` is not used: the tree's ``val/`` is.

    Args:
        data_dir: the tree's root.
        image_size: training and evaluation side in pixels.
        crop_pct: evaluation centre-crop fraction (resize to ``image_size / crop_pct``, then crop).
        interpolation: resize interpolation ('bicubic', 'bilinear').
        auto_augment: timm RandAugment string for training; None = off.
        mean: normalisation mean per channel.
        std: normalisation std per channel.
        num_workers: DataLoader workers (JPEG decoding).
        **kwargs: `ClassificationDataModule`'s arguments.

    Raises:
        DataError: the root does not exist or holds no class folders.
    """

    def __init__(self, data_dir: Optional[str] = None, image_size: int = 224, crop_pct: float = 0.9,
                 interpolation: str = 'bicubic', auto_augment: Optional[str] = 'rand-m9-mstd0.5-inc1',
                 mean: Sequence[float] = IMAGENET_DEFAULT_MEAN, std: Sequence[float] = IMAGENET_DEFAULT_STD,
                 num_workers: int = 2, **kwargs: Any):
        if not data_dir or not os.path.isdir(data_dir):
            raise DataError(f'ImageFolder root {data_dir!r} does not exist: pass --data-dir DIR with '
                            f'DIR/train/<class>/*.jpg and DIR/val/<class>/*.jpg')
        super().__init__(data_dir=data_dir, image_size=image_size, num_workers=num_workers, **kwargs)
        self.crop_pct = crop_pct
        self.interpolation = interpolation
        self.auto_augment = auto_augment
        eval_root = self._split_dir('val', required=False) or self._split_dir('train', required=False) or data_dir
        classes = sorted(e.name for e in os.scandir(eval_root) if e.is_dir())
        if not classes:
            raise DataError(f'no class folders found in {eval_root}: expected {eval_root}/<class>/<image files>')
        self.info = DatasetInfo(os.path.basename(os.path.normpath(data_dir)), len(classes), 3, image_size,
                                tuple(mean), tuple(std), tuple(classes))

    def _split_dir(self, split: str, required: bool = True) -> Optional[str]:
        path = os.path.join(self.data_dir, split)
        if os.path.isdir(path):
            return path
        if split == 'val' and not os.path.isdir(os.path.join(self.data_dir, 'train')):
            return self.data_dir  # a bare <class>/<images> tree: evaluation only
        if required:
            raise DataError(f'{path} does not exist: an ImageFolder root needs train/ and val/ class folders')
        return None

    def transforms(self, train: bool):
        """timm's ImageNet transforms: RandAugment / random erasing for training, resize by ``crop_pct`` + centre crop at eval."""
        return create_transform(
            self.image_size, is_training=train and self.augment, interpolation=self.interpolation,
            crop_pct=self.crop_pct, mean=self.info.mean, std=self.info.std,
            auto_augment=self.auto_augment if train else None, re_prob=self.reprob if train else 0.)

    def _folder(self, split: str, train: bool) -> datasets.ImageFolder:
        ds = datasets.ImageFolder(self._split_dir(split), transform=self.transforms(train), loader=load_rgb)
        if list(ds.classes) != list(self.info.class_names):
            raise DataError(f'class folders of {self._split_dir(split)} differ from those of the validation set')
        return ds

    def setup(self, stage: Optional[str] = None):
        """ImageFolders of ``train/``, ``val/`` (and ``test/``, else val) with the same class folders."""
        if stage in (None, 'fit') and self.train_set is None:
            self.train_set = self._folder('train', True)
        if stage in (None, 'fit', 'validate') and self.val_set is None:
            self.val_set = self._folder('val', False)
        if stage in (None, 'test', 'predict') and self.test_set is None:
            self.test_set = self._folder('test' if self._split_dir('test', required=False) else 'val', False)
