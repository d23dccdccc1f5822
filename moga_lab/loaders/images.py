"""The images every named model is shown: one eval transform for all (`EVAL_TRANSFORMS`), a reproducible draw per
class, the pixel-mean baseline; see `moga_lab.loaders`."""
import math
import os
from dataclasses import replace
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Union

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from moga_lab.data import DataError, DatasetInfo, create_datamodule
from moga_lab.loaders.models import NamedModel

__all__ = ['EvalImages', 'load_eval_images', 'eval_dataset', 'transform_config', 'describe_transform', 'PAPER_TRANSFORM',
           'EVAL_TRANSFORMS', 'pixel_mean_image', 'write_image_list']

# The authors' interaction / Grad-CAM inputs for every model: torchvision Resize(256) (bilinear) -> CenterCrop(224),
# ImageNet mean/std. crop_pct = 224/256.
PAPER_TRANSFORM = dict(input_size=(3, 224, 224), interpolation='bilinear', crop_pct=224 / 256, crop_mode='center',
                       mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD)
# auto: one named model -> its own pretrained config; several -> the paper's shared transform
EVAL_TRANSFORMS = ('auto', 'model', 'paper')


class EvalImages(NamedTuple):
    """Images normalised for the models ([N, C, H, W]), labels in the models' class indices, the ids that selected
    them from the dataset, the dataset's description (``info.transform`` states the transform) and, for an ImageFolder,
    the files."""
    images: torch.Tensor
    labels: torch.Tensor
    ids: List[int]
    info: DatasetInfo
    paths: Optional[List[str]] = None


def transform_config(models: Sequence[NamedModel], choice: str = 'auto') -> Dict[str, Any]:
    """The one eval config (timm ``create_transform`` keywords) every named model is shown: ``model`` = the first
    model's pretrained config, ``paper`` = `PAPER_TRANSFORM`, ``auto`` = ``model`` for one model, ``paper``
    for several."""
    if choice not in EVAL_TRANSFORMS:
        raise ValueError(f'--eval-transform {choice!r} is not accepted; accepted: {", ".join(EVAL_TRANSFORMS)}')
    if choice == 'auto':
        choice = 'model' if len(models) == 1 else 'paper'
    cfg = dict(models[0].data_config or {}) if choice == 'model' else dict(PAPER_TRANSFORM)
    return cfg


def describe_transform(cfg: Dict[str, Any]) -> str:
    """'resize 256 (bilinear) -> centre crop 224, mean (0.485, ...) std (...)'."""
    size = int(cfg['input_size'][-1])
    scale = int(math.floor(size / cfg['crop_pct']))
    r = lambda v: tuple(round(float(x), 3) for x in v)  # noqa: E731
    return (f'resize {scale} ({cfg["interpolation"]}) -> centre crop {size}, mean {r(cfg["mean"])} std '
            f'{r(cfg["std"])}')


def _image_folder_root(data_dir: Optional[str]) -> str:
    if not data_dir or not os.path.isdir(data_dir):
        raise DataError(f'--data-dir {data_dir!r} is not a folder: pass an ImageNet-style folder DIR/<class>/<image> '
                        f'(or DIR/val/<class>/<image>)')
    val = os.path.join(data_dir, 'val')
    return val if os.path.isdir(val) else data_dir


class _LabelMap:
    """Folder index -> the model's class index (picklable for DataLoader workers)."""

    def __init__(self, table: Sequence[int]):
        self.table = list(table)

    def __call__(self, index: int) -> int:
        return self.table[index]


def eval_dataset(models: Sequence[NamedModel], data_dir: Optional[str], transform: str = 'auto',
                 overrides: Optional[Dict[str, Any]] = None):
    """``(dataset, info)``: the ImageFolder under ``data_dir`` (``DIR/val`` when present) with the chosen eval
    transform and labels in the models' class indices. ``overrides`` replaces transform keys (e.g. ``crop_pct``)."""
    from timm.data import create_transform
    from torchvision import datasets

    from moga_lab.data.imagefolder import load_rgb
    ref = models[0]
    cfg = {**transform_config(models, transform), **(overrides or {})}
    root = _image_folder_root(data_dir)
    try:
        classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    except OSError as error:
        raise DataError(f'cannot read {root}: {error}') from None
    if not classes:
        raise DataError(f'no class folders in {root}: expected {root}/<class>/<image files>')
    if ref.synsets and all(c in ref.synsets for c in classes):
        index = {s: i for i, s in enumerate(ref.synsets)}
        table = [index[c] for c in classes]
        names = ref.class_names
    elif len(classes) == ref.num_classes:
        table, names = list(range(len(classes))), tuple(classes)
    else:
        raise DataError(f'{root} has {len(classes)} class folders but {ref.name} classifies {ref.num_classes} classes: '
                        f'name the folders by WordNet ID (n01440764, ...) for ImageNet weights, or give exactly one '
                        f'folder per class, sorted in the weights\' class order')
    try:
        ds = datasets.ImageFolder(root, transform=create_transform(**cfg, is_training=False), loader=load_rgb,
                                  target_transform=_LabelMap(table))
    except FileNotFoundError:
        raise DataError(f'no images in the class folders of {root}: expected {root}/<class>/<name>.jpg '
                        f'(or .png, .jpeg, .bmp, .webp, ...)') from None
    size = int(cfg['input_size'][-1])
    info = DatasetInfo(os.path.basename(os.path.normpath(str(data_dir))), ref.num_classes, 3, size, tuple(cfg['mean']),
                       tuple(cfg['std']), tuple(names), transform=describe_transform(cfg))
    return ds, info


def _select(targets: Sequence[int], num_images: int, seed: int, per_class: bool) -> List[int]:
    n = len(targets)
    g = torch.Generator().manual_seed(seed)
    if not per_class:
        if not 1 <= num_images <= n:
            raise ValueError(f'--num-images={num_images} must be in 1..{n} (the images available)')
        return torch.randperm(n, generator=g).tolist()[:num_images]
    by_class: Dict[int, List[int]] = {}
    for i, t in enumerate(targets):
        by_class.setdefault(int(t), []).append(i)
    classes = sorted(by_class)
    if not 1 <= num_images <= len(classes):
        raise ValueError(f'--num-images={num_images} with --one-per-class must be in 1..{len(classes)} '
                         f'(the classes available)')
    order = torch.randperm(len(classes), generator=g).tolist()[:num_images]
    picks = []
    for k in order:
        members = by_class[classes[k]]
        picks.append(members[int(torch.randint(len(members), (1,), generator=g))])
    return picks


def _check_input_size(models: Sequence[NamedModel], size: int) -> None:
    """A model pretrained at another size (e.g. a Swin at 384 px) may refuse the shared size: say so in one line."""
    for m in models:
        if m.image_size == size:
            continue
        try:
            with torch.no_grad():
                m.model(torch.zeros(1, m.in_chans, size, size))
        except Exception as error:  # noqa: BLE001 - the model's own refusal, reported with what to do
            raise ValueError(f'{m.name} (pretrained at {m.image_size} px) does not take {size} px inputs '
                             f'({error.__class__.__name__}); compare it with models of its size or use '
                             f'--eval-transform model') from None


def load_eval_images(models: Union[NamedModel, Sequence[NamedModel]], num_images: int, data: Optional[str] = None,
                     data_dir: Optional[str] = None, seed: int = 0, per_class: bool = False,
                     transform: str = 'auto') -> EvalImages:
    """``num_images`` evaluation images drawn with ``seed``, normalised for ``models``.

    Fit checkpoints: their run's test set (or ``data`` / ``data_dir``), normalised as in training. Named models: the
    ImageFolder ``data_dir`` with the eval transform ``transform`` chooses (see `transform_config`).

    Args:
        models: one model or the models of a comparison (all see the same pixels).
        num_images: images to draw.
        data: a dataset name of `moga_lab.data.DATASETS` instead of the checkpoint's.
        data_dir: the dataset's folder (an ImageFolder tree for named models).
        seed: seed of the draw.
        per_class: one image from each of ``num_images`` classes, as the authors' list.
        transform: 'auto', 'model' (each model's own timm config; one model only) or 'paper' (resize 256 bilinear,
            centre crop 224, ImageNet mean / std).

    Returns:
        `EvalImages` ``(images, labels, ids, info, paths)``.

    Raises:
        moga_lab.data.DataError: missing data, a folder without images, or classes that do not match the models.
    """
    models = [models] if isinstance(models, NamedModel) else list(models)
    ref = models[0]
    if ref.is_fit_checkpoint:
        d: Dict[str, Any] = ref.run_data or {}
        name = data or d.get('name', 'fashion-mnist')
        kwargs: Dict[str, Any] = dict(data_dir=data_dir or d.get('data_dir'))
        if d.get('image_size'):
            kwargs['image_size'] = d['image_size']
        dm = create_datamodule(name, **kwargs)
        if (dm.num_classes, dm.in_chans) != (ref.num_classes, ref.in_chans):
            raise ValueError(f'{ref.name} was trained for {ref.num_classes} classes of {ref.in_chans}-channel images; '
                             f'{name} has {dm.num_classes} classes and {dm.in_chans} channels')
        dm.setup('test')
        ds: Any = dm.test_set
        info, paths = replace(dm.info, transform='the run\'s eval transform'), None
        targets = ds.labels.tolist() if hasattr(ds, 'labels') else list(getattr(ds, 'targets', []))
    else:
        if data not in (None, 'imagefolder'):
            raise ValueError(f'--data {data} does not fit {ref.name} ({ref.num_classes} classes, {ref.in_chans} '
                             f'channels); for released weights use --data imagefolder --data-dir DIR')
        ds, info = eval_dataset(models, data_dir, transform)
        targets = ds.targets
        _check_input_size(models, info.image_size)
    ids = _select(targets, num_images, seed, per_class)
    items = [ds[i] for i in ids]
    images = torch.stack([x for x, _ in items])
    labels = torch.as_tensor([int(y) for _, y in items])
    if not ref.is_fit_checkpoint:
        paths = [ds.samples[i][0] for i in ids]
    return EvalImages(images, labels, ids, info, paths)


def pixel_mean_image(models: Union[NamedModel, Sequence[NamedModel]], data: Optional[str] = None,
                     data_dir: Optional[str] = None, transform: str = 'auto', batch_size: int = 1024) -> torch.Tensor:
    """Each pixel's mean over the training images, normalised as the models see them ([C, H, W]): the ``pixel-mean``
    masking baseline (Deng et al. define the baseline as each input variable's mean over samples).

    Fit checkpoints: the training split of their run's data (the validation split left out), through the eval
    transform. Named models on an ImageFolder, which has no training split: the images of ``data_dir`` themselves.

    Args:
        models: the model(s) the images are for.
        data: a dataset name instead of the checkpoint's.
        data_dir: the dataset's folder.
        transform: the eval transform choice for named models (see `transform_config`).
        batch_size: images per step of the running mean.

    Returns:
        The mean image, float32 [C, H, W].
    """
    from torch.utils.data import DataLoader, Subset
    models = [models] if isinstance(models, NamedModel) else list(models)
    ref = models[0]
    if ref.is_fit_checkpoint:
        d: Dict[str, Any] = ref.run_data or {}
        kwargs: Dict[str, Any] = dict(data_dir=data_dir or d.get('data_dir'))
        if d.get('image_size'):
            kwargs['image_size'] = d['image_size']
        for key in ('val_size', 'split_seed'):
            if d.get(key) is not None:
                kwargs[key] = d[key]
        dm = create_datamodule(data or d.get('name', 'fashion-mnist'), **kwargs)
        full = dm._load_train()
        full.transform = dm.transforms(train=False)
        ds = Subset(full, list(dm._split(len(full))[0]))
    else:
        ds, _ = eval_dataset(models, data_dir, transform)
    total: Optional[torch.Tensor] = None
    count = 0
    for x, _ in DataLoader(ds, batch_size=batch_size):
        x = x.to(torch.float64)
        total = x.sum(0) if total is None else total + x.sum(0)
        count += len(x)
    if total is None:
        raise DataError('no training images to average for the pixel-mean baseline')
    return (total / count).to(torch.float32)


def write_image_list(path: str, ids, labels, info, paths=None) -> None:
    """``images.csv``: image_id, label, class name (and file) of the images a run used, written atomically."""
    import pandas as pd
    from moga_lab.utils.atomic import atomic_write_csv
    frame = pd.DataFrame(dict(image_id=list(ids), label=[int(t) for t in labels],
                              class_name=[info.class_names[int(t)] for t in labels]))
    if paths:
        frame['path'] = paths
    atomic_write_csv(path, frame)
