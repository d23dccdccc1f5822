"""Models from what the user named: a ``moga_lab.cli.fit`` checkpoint (or its ``.safetensors`` export), or a timm
model name with a local weights file (the authors' released MogaNet files, timm-format ConvNeXt / Swin weights); see
`moga_lab.loaders`."""
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from moga_lab.models import MOGANET_ARCHS, CheckpointMismatchError, MogaNet, load_checkpoint, read_weights, torch_load
from moga_lab.models.factory import create_classifier

__all__ = ['NamedModel', 'load_classifier', 'load_pretrained', 'load_models', 'load_classifiers', 'FIT_METADATA_KEY',
           'fit_contents']

# the metadata key under which `moga_lab.cli.export` stores a fit run's hyper-parameters (JSON) in a .safetensors file
FIT_METADATA_KEY = 'moga_lab.hyper_parameters'


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
    model: Any = timm.create_model(model_name, pretrained=False)  # (a timm model: its attributes are timm's)
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
        if src[0] == 'checkpoint':
            models.append(load_classifier(src[1], label, trust))
        else:
            models.append(load_pretrained(src[1], src[-1], label, use_ema, trust))  # ('model', name, weights)
    names = [m.name for m in models]
    if len(set(names)) < len(names):
        for m, src in zip(models, sources):
            where = src[1] if src[0] == 'checkpoint' else src[-1]
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
