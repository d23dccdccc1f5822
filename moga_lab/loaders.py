"""What the user named on the command line, turned into models and the images to show them.

Two kinds of sources:

* a checkpoint written by ``moga_lab.cli.fit`` (``--checkpoint runs/x/best.ckpt``): the network it trained, its data's
  eval transform, class names and test set;
* a timm model name plus a local weights file (``--model moganet_tiny --weights moganet_tiny_sz224_8xbs128_ep300.pth.tar``,
  ``--model convnext_tiny --weights convnext_tiny.pth``): the authors' released MogaNet files (``{'state_dict': ...}``)
  or timm-format ConvNeXt / Swin weights (the original FB / MS formats too, through timm's own converters), evaluated
  with the model's pretrained config (resize by crop_pct, centre crop, interpolation, mean/std) on an ImageFolder.

`load_models` gives a `NamedModel` per source; `load_eval_images` draws, reproducibly, the images all
of them are shown (one transform for all when several are compared, see `EVAL_TRANSFORMS`). Every analysis
command and study script loads models here; this module does not import the training package.

ImageFolder class order: a 1000-class ImageNet model's labels are taken from folder names that are WordNet IDs
(``n01440764`` ...), so a subset of ImageNet's class folders works too; otherwise the sorted folder names are the
class indices 0..K-1 and their number must equal the classifier's K.
"""
import json
import math
import os
import sys
from dataclasses import dataclass, replace
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from moga_lab.data import DataError, DatasetInfo, create_datamodule
from moga_lab.models import MOGANET_ARCHS, CheckpointMismatchError, MogaNet, load_checkpoint, read_weights, torch_load
from moga_lab.models.factory import create_classifier

__all__ = ['NamedModel', 'EvalImages', 'load_classifier', 'load_pretrained', 'load_models', 'load_classifiers',
           'load_eval_images', 'eval_dataset', 'transform_config', 'describe_transform', 'PAPER_TRANSFORM',
           'EVAL_TRANSFORMS', 'pixel_mean_image', 'FIT_METADATA_KEY', 'fit_contents']

# The authors' interaction / Grad-CAM inputs for every model: torchvision Resize(256) (bilinear) -> CenterCrop(224),
# ImageNet mean/std. crop_pct = 224/256.
PAPER_TRANSFORM = dict(input_size=(3, 224, 224), interpolation='bilinear', crop_pct=224 / 256, crop_mode='center',
                       mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD)
# the metadata key under which `moga_lab.cli.export` stores a fit run's hyper-parameters (JSON) in a .safetensors file
FIT_METADATA_KEY = 'moga_lab.hyper_parameters'
# auto: one named model -> its own pretrained config; several -> the paper's shared transform
EVAL_TRANSFORMS = ('auto', 'model', 'paper')


@dataclass
class NamedModel:
    """A network (eval mode) with what it takes to feed it: input shape, normalisation, class names.

    ``run_data`` is a fit checkpoint's data section (its test set gives the default images); ``data_config`` is a
    named model's timm eval config (``input_size``, ``interpolation``, ``crop_pct``, ``mean``, ``std``)."""
    model: nn.Module
    name: str
    source: str
    num_classes: int
    in_chans: int
    image_size: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    class_names: Tuple[str, ...]
    run_data: Optional[Dict[str, Any]] = None
    data_config: Optional[Dict[str, Any]] = None
    synsets: Optional[Tuple[str, ...]] = None   # ImageNet WordNet IDs by class index (1000-class models)

    @property
    def is_fit_checkpoint(self) -> bool:
        """True for a model from a ``moga_lab.cli.fit`` checkpoint (its run's data and transform apply)."""
        return self.run_data is not None


class EvalImages(NamedTuple):
    """Images normalised for the models ([N, C, H, W]), labels in the models' class indices, the ids that selected
    them from the dataset, the dataset's description (``info.transform`` states the transform) and, for an ImageFolder,
    the files."""
    images: torch.Tensor
    labels: torch.Tensor
    ids: List[int]
    info: DatasetInfo
    paths: Optional[List[str]] = None


# ---- models -------------------------------------------------------------------------------------

def _fit_checkpoint_contents(path: str, trust: bool = False) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    """(hyper_parameters, network state dict) of a fit checkpoint, or of its ``.safetensors`` export
    (`moga_lab.cli.export`: the hyper-parameters as JSON in the file's metadata)."""
    if path.endswith('.safetensors'):
        from safetensors import safe_open
        with safe_open(path, framework='pt') as f:
            meta = f.metadata() or {}
        if FIT_METADATA_KEY not in meta:
            raise ValueError(f'{path} is a .safetensors file without moga_lab\'s run metadata; for released or timm '
                             f'weights use --model NAME --weights {path}')
        return json.loads(meta[FIT_METADATA_KEY]), read_weights(path)[0]
    found = fit_contents(torch_load(path, trust=trust))
    if found is None:
        raise ValueError(f'{path} is not a checkpoint written by moga_lab.cli.fit (no hyper_parameters.config); for '
                         f'released or timm weights use --model NAME --weights {path}')
    return found


def fit_contents(ckpt: Any) -> Optional[Tuple[Dict[str, Any], Dict[str, torch.Tensor]]]:
    """(hyper_parameters, the network's state dict) of a loaded ``moga_lab.cli.fit`` checkpoint; None for anything else.

    Args:
        ckpt: a loaded checkpoint object.
    """
    hp = (ckpt.get('hyper_parameters') or {}) if isinstance(ckpt, dict) else {}
    if 'config' not in hp:
        return None
    return hp, {k[len('model.'):]: v for k, v in ckpt['state_dict'].items() if k.startswith('model.')}


def load_classifier(path: str, label: Optional[str] = None, trust: bool = False) -> NamedModel:
    """The network a ``moga_lab.cli.fit`` checkpoint holds ([B, C, H, W] -> [B, classes], eval mode), with its data's
    normalisation and class names. Imports nothing of ``moga_lab.training``.

    Args:
        path: a ``best.ckpt`` / ``last.ckpt`` written by `moga_lab.training.fit`, or its ``.safetensors`` export
            (`moga_lab.cli.export`).
        label: the name reports use; None = the run's model name.
        trust: allow full unpickling of the file (see `moga_lab.models.checkpoint.torch_load`).

    Returns:
        A `NamedModel`.

    Raises:
        FileNotFoundError: the file does not exist.
        moga_lab.models.CheckpointMismatchError: the file is not a fit checkpoint or does not fit its model.
        moga_lab.models.UntrustedCheckpointError: the file needs full unpickling and ``trust`` is False.

    Example:
        ```python
        m = load_classifier('runs/xt/best.ckpt')
        images, labels, ids, info, paths = load_eval_images(m, 8, seed=0)
        ```
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint {path!r} does not exist')
    hp, state = _fit_checkpoint_contents(path, trust)
    config = hp['config']
    n, in_chans, size = int(hp['num_classes']), int(hp['in_chans']), int(hp['image_size'])
    switches = dict(config.get('model') or {})
    model = create_classifier(num_classes=n, in_chans=in_chans, image_size=size, **switches)
    load_checkpoint(model, state, allow_classifier_change=False)
    return NamedModel(
        model=model.eval(), name=label or switches.get('name', 'model'), source=f'fit checkpoint {path}',
        num_classes=n, in_chans=in_chans, image_size=size, mean=tuple(hp.get('mean') or ()),
        std=tuple(hp.get('std') or ()), class_names=tuple(hp.get('class_names') or [str(i) for i in range(n)]),
        run_data=dict(config.get('data') or {}))


def _guess_architecture(state: Dict[str, torch.Tensor]) -> str:
    """'moganet_tiny', 'a ConvNeXt', ... from a state dict's keys, for error messages."""
    if 'patch_embed1.projection.0.weight' in state:
        dims = tuple(int(state[f'norm{i}.weight'].shape[0]) for i in range(1, 5) if f'norm{i}.weight' in state)
        depths = tuple(len({k.split('.')[1] for k in state if k.startswith(f'blocks{i}.')}) for i in range(1, 5))
        for arch, spec in MOGANET_ARCHS.items():
            if tuple(spec['depths']) == depths and tuple(spec['embed_dims']) == dims:
                return f'moganet_{arch}'
        return 'a MogaNet'
    if any(k.startswith('stages.') for k in state) and any(k.startswith('stem.') for k in state):
        return 'a ConvNeXt'
    if any(k.startswith('layers.0.blocks.') for k in state):
        return 'a Swin Transformer'
    if any(k.startswith('downsample_layers.') for k in state):
        return 'a ConvNeXt (original FB format)'
    return 'another architecture'


def _one_line_mismatch(weights: str, model_name: str, state, error: CheckpointMismatchError) -> str:
    report = getattr(error, 'report', None)
    parts = []
    if report is not None:
        for what, keys in (('missing', report.missing), ('unexpected', report.unexpected),
                           ('mis-shaped', [k for k, _, _ in report.mis_shaped])):
            if keys:
                parts.append(f'{len(keys)} {what} (e.g. {keys[0]})')
    guess = _guess_architecture(state)
    return (f'--weights {weights} do not fit --model {model_name}: {"; ".join(parts) or str(error).splitlines()[0]}; '
            f'the file looks like {guess} weights')


def _imagenet_names(num_classes: int):
    if num_classes != 1000:
        return tuple(str(i) for i in range(num_classes)), None
    from timm.data import ImageNetInfo
    info = ImageNetInfo()
    names = tuple(d.split(',')[0] for d in info.label_descriptions())
    return names, tuple(info.label_names())


def load_pretrained(model_name: str, weights: str, label: Optional[str] = None, use_ema: bool = True,
                    trust: bool = False) -> NamedModel:
    """``timm.create_model(model_name)`` with ``weights`` (a local file) loaded strictly; the classifier size is read
    from the file. EMA weights are used when the file holds them (timm's rule); ``source`` of the result says which
    entry was loaded.

    Args:
        model_name: any timm name (``moganet_tiny``, ``convnext_tiny``, ``swin_tiny_patch4_window7_224``, ...).
        weights: the local weights file (the authors' release layout, timm's, or the original FB / MS formats).
        label: the name reports use; None = ``model_name``.
        use_ema: prefer the EMA entry when present; False takes ``state_dict``.
        trust: allow full unpickling of the file (see `moga_lab.models.checkpoint.torch_load`).

    Returns:
        A `NamedModel` with ``data_config`` (timm's eval transform of the model).

    Raises:
        FileNotFoundError: the file does not exist (nothing is downloaded).
        moga_lab.models.CheckpointMismatchError: the weights belong to another architecture (the message names what
            the file looks like).
        moga_lab.models.UntrustedCheckpointError: the file needs full unpickling and ``trust`` is False.

    Example:
        ```python
        m = load_pretrained('moganet_tiny', 'moganet_tiny_sz224_8xbs128_ep300.pth.tar')
        m.data_config   # {'input_size': (3, 224, 224), 'crop_pct': 0.9, 'interpolation': 'bicubic', ...}
        ```
    """
    import timm
    from timm.data import resolve_data_config
    if not os.path.isfile(weights):
        raise FileNotFoundError(f'--weights {weights!r} does not exist (pass a local file; nothing is downloaded)')
    if not timm.is_model(model_name.split('.')[0]):
        raise ValueError(f'unknown --model {model_name!r}; accepted: moganet_xtiny ... moganet_xlarge or any timm '
                         f'model name, e.g. convnext_tiny, swin_tiny_patch4_window7_224')
    model = timm.create_model(model_name, pretrained=False)
    state, entry = read_weights(weights, use_ema=use_ema, trust=trust)
    raw = dict(state)
    if not isinstance(model, MogaNet):
        # timm's per-family converter (original FB ConvNeXt / MS Swin formats, resized position tables)
        convert = getattr(sys.modules[type(model).__module__], 'checkpoint_filter_fn', None)
        if convert is not None:
            try:
                state = convert(state, model)
            except Exception as error:  # noqa: BLE001 - a converter choking on foreign keys = a file for another model
                raise CheckpointMismatchError(
                    f'--weights {weights} do not fit --model {model_name} (timm\'s converter failed: '
                    f'{error.__class__.__name__}); the file looks like {_guess_architecture(raw)} weights') from None
    classifier = model.pretrained_cfg.get('classifier') or 'head'
    head = state.get(f'{classifier}.weight')
    if head is not None and head.ndim == 2 and head.shape[0] != model.num_classes:
        model.reset_classifier(int(head.shape[0]))
    try:
        load_checkpoint(model, state, allow_classifier_change=False)
    except CheckpointMismatchError as error:
        raise CheckpointMismatchError(_one_line_mismatch(weights, model_name, raw, error)) from None
    cfg = resolve_data_config({}, model=model)
    names, synsets = _imagenet_names(model.num_classes)
    first = model.pretrained_cfg.get('first_conv')
    in_chans = dict(model.named_modules())[first].in_channels if first else 3
    return NamedModel(model=model.eval(), name=label or model_name, source=f'{entry or "weights"} of {weights}',
                      num_classes=model.num_classes, in_chans=in_chans, image_size=int(cfg['input_size'][-1]),
                      mean=tuple(cfg['mean']), std=tuple(cfg['std']), class_names=names, data_config=cfg,
                      synsets=synsets)


Source = Union[Tuple[str, str], Tuple[str, str, str]]  # ('checkpoint', path) or ('model', name, weights)


def load_models(sources: Sequence[Source], labels: Optional[Sequence[str]] = None,
                use_ema: bool = True, trust: bool = False) -> List[NamedModel]:
    """Several models that are to see the same images.

    Args:
        sources: ``('checkpoint', path)`` or ``('model', name, weights)`` per model, in order.
        labels: one name per model; None = the model names (made unique when two clash).
        use_ema: for named weights, prefer the EMA entry.
        trust: allow full unpickling of the files (``--trust-weights``; see `moga_lab.models.checkpoint.torch_load`).

    Returns:
        The `NamedModel` list, in the order given.

    Raises:
        ValueError: no model, or a label count that does not match.
    """
    labels = list(labels or [])
    if not sources:
        raise ValueError('no model given: pass --checkpoint FILE (a fit checkpoint) or --model NAME --weights FILE')
    if labels and len(labels) != len(sources):
        raise ValueError(f'{len(labels)} --label for {len(sources)} models; give one per model')
    models = []
    for k, src in enumerate(sources):
        label = labels[k] if labels else None
        models.append(load_classifier(src[1], label, trust) if src[0] == 'checkpoint'
                      else load_pretrained(src[1], src[2], label, use_ema, trust))
    names = [m.name for m in models]
    if len(set(names)) < len(names):
        for m, src in zip(models, sources):
            where = src[1] if src[0] == 'checkpoint' else src[2]
            m.name = f'{m.name} ({os.path.basename(os.path.dirname(os.path.abspath(where))) or where})'
    kinds = {m.is_fit_checkpoint for m in models}
    if len(kinds) > 1:
        raise ValueError('fit checkpoints and --model/--weights pairs cannot be compared in one run (their data and '
                         'transforms differ); run them separately')
    ref = models[0]
    for m in models[1:]:
        same = (m.in_chans, m.num_classes) == (ref.in_chans, ref.num_classes)
        if ref.is_fit_checkpoint:
            same = same and (m.image_size, m.mean, m.std) == (ref.image_size, ref.mean, ref.std)
        if not same:
            raise ValueError(f'{m.name} and {ref.name} take other inputs (channels, size, classes or normalisation '
                             f'differ: {m.in_chans}/{m.image_size}/{m.num_classes} vs {ref.in_chans}/'
                             f'{ref.image_size}/{ref.num_classes}): they cannot be compared on the same images')
    return models


def load_classifiers(paths: Sequence[str], labels: Optional[Sequence[str]] = None) -> List[NamedModel]:
    """Several fit checkpoints (see `load_models`)."""
    return load_models([('checkpoint', p) for p in paths], labels)


# ---- transforms and images ------------------------------------------------------------------------

def transform_config(models: Sequence[NamedModel], choice: str = 'auto') -> Dict[str, Any]:
    """The one eval config (timm ``create_transform`` keywords) every named model is shown: ``model`` = the first
    model's pretrained config, ``paper`` = `PAPER_TRANSFORM`, ``auto`` = ``model`` for one model, ``paper``
    for several."""
    if choice not in EVAL_TRANSFORMS:
        raise ValueError(f'--eval-transform {choice!r} is not accepted; accepted: {", ".join(EVAL_TRANSFORMS)}')
    if choice == 'auto':
        choice = 'model' if len(models) == 1 else 'paper'
    cfg = dict(models[0].data_config) if choice == 'model' else dict(PAPER_TRANSFORM)
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
    info = DatasetInfo(os.path.basename(os.path.normpath(data_dir)), ref.num_classes, 3, size, tuple(cfg['mean']),
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
        d = ref.run_data
        name = data or d.get('name', 'fashion-mnist')
        kwargs: Dict[str, Any] = dict(data_dir=data_dir or d.get('data_dir'))
        if d.get('image_size'):
            kwargs['image_size'] = d['image_size']
        dm = create_datamodule(name, **kwargs)
        if (dm.num_classes, dm.in_chans) != (ref.num_classes, ref.in_chans):
            raise ValueError(f'{ref.name} was trained for {ref.num_classes} classes of {ref.in_chans}-channel images; '
                             f'{name} has {dm.num_classes} classes and {dm.in_chans} channels')
        dm.setup('test')
        ds, info, paths = dm.test_set, replace(dm.info, transform='the run\'s eval transform'), None
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
        d = ref.run_data
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
    total, count = None, 0
    for x, _ in DataLoader(ds, batch_size=batch_size):
        x = x.to(torch.float64)
        total = x.sum(0) if total is None else total + x.sum(0)
        count += len(x)
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
