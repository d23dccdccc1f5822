"""Load MogaNet (or any) weights from a local file, whatever wrapping they come in.

Handles the usual wrappings: ``{'state_dict': ...}`` (the authors' releases, Lightning), ``{'model': ...}``
(DeiT-style trainers), ``module.`` (DDP), ``_orig_mod.`` (torch.compile) and ``model.`` (a LightningModule
holding the network as ``self.model``) prefixes, and a classifier of another size (dropped, the model keeps
its own). Anything else that does not fit raises `CheckpointMismatchError` listing the missing,
unexpected and mis-shaped keys. Nothing is ever downloaded.

EMA weights (``state_dict_ema`` of timm's trainer, ``model_ema`` of DeiT-style ones) are taken instead of the raw
weights only when asked (``use_ema=True``, timm's rule for ``pretrained`` files); `read_weights` says which
entry was used.
"""
import argparse
import os
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Tuple, Union

import torch
import torch.nn as nn

__all__ = ['CheckpointMismatchError', 'LoadReport', 'read_state_dict', 'read_weights', 'load_checkpoint', 'EMA_KEYS']

_WRAPPER_KEYS = ('state_dict', 'model', 'module', 'net')
_PREFIXES = ('module.', '_orig_mod.', 'model.')
EMA_KEYS = ('state_dict_ema', 'model_ema')


class CheckpointMismatchError(ValueError):
    """The checkpoint's keys or shapes do not fit the model."""


@dataclass
class LoadReport:
    """What `load_checkpoint` did: keys missing from the checkpoint, unexpected in it, mis-shaped (key,
    checkpoint shape, model shape), and a classifier of another size that was dropped."""
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mis_shaped: List[Tuple[str, tuple, tuple]] = field(default_factory=list)  # key, checkpoint, model
    dropped_classifier: List[str] = field(default_factory=list)

    def describe(self, limit: int = 20) -> str:
        """The problems as text, one line per kind, at most ``limit`` keys each."""
        def show(items):
            items = list(items)
            more = f' ... and {len(items) - limit} more' if len(items) > limit else ''
            return ', '.join(str(i) for i in items[:limit]) + more
        lines = []
        if self.missing:
            lines.append(f'missing from the checkpoint ({len(self.missing)}): {show(self.missing)}')
        if self.unexpected:
            lines.append(f'unexpected in the checkpoint ({len(self.unexpected)}): {show(self.unexpected)}')
        if self.mis_shaped:
            lines.append(f'mis-shaped ({len(self.mis_shaped)}): ' + show(
                f'{k} checkpoint {tuple(a)} vs model {tuple(b)}' for k, a, b in self.mis_shaped))
        return '\n  '.join(lines)


def _torch_load(path: str):
    try:
        # timm's trainer (the authors' too) stores its argparse.Namespace beside the weights: allowed, as timm does
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as safe_error:  # noqa: BLE001 - decide below whether the file is unreadable or just pickled
        try:
            # older releases (e.g. training scripts saving argparse.Namespace) need full unpickling;
            # the user named this local file, so we trust it as torch.load did before 2.6
            obj = torch.load(path, map_location='cpu', weights_only=False)
        except Exception as error:  # noqa: BLE001
            raise CheckpointMismatchError(
                f'cannot read checkpoint {path!r}: {error.__class__.__name__}: {str(error).splitlines()[0][:200]} '
                f'(expected a file written by torch.save)') from None
        warnings.warn(f'{path}: not loadable with weights_only=True ({safe_error.__class__.__name__}); '
                      f'loaded with full unpickling')
        return obj


def read_weights(source: Union[str, os.PathLike, Mapping],
                 use_ema: bool = False) -> Tuple[Dict[str, torch.Tensor], str]:
    """A flat ``{name: tensor}`` from a checkpoint file or object, and the entry it came from.

    Wrappers (``state_dict``, ``model``, ``module.`` / ``model.`` prefixes, Lightning's ``model.``) are removed.

    Args:
        source: a path to a local ``.pth`` / ``.pth.tar`` / ``.ckpt`` file, or an already loaded checkpoint object.
        use_ema: prefer an EMA entry (``state_dict_ema``, ``model_ema``) when the checkpoint holds one.

    Returns:
        ``(state, entry)``: the weights and the entry they came from (``'state_dict'``, ``'state_dict_ema'``,
        ``'model'``, ... or ``''`` for a bare dict).

    Raises:
        FileNotFoundError: the path does not exist (nothing is downloaded).
        CheckpointMismatchError: the file cannot be read as a checkpoint.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'checkpoint file {path!r} does not exist (nothing is downloaded: '
                                    f'pass the path of a local .pth/.pth.tar/.ckpt file)')
        obj = _torch_load(path)
    else:
        obj = source
    if not isinstance(obj, Mapping):
        raise CheckpointMismatchError(f'a checkpoint must hold a dict of tensors; got {type(obj).__name__}')
    entries = []
    if use_ema:
        ema = next((k for k in EMA_KEYS if isinstance(obj.get(k), Mapping)), None)
        if ema:
            obj = obj[ema]
            entries.append(ema)
    # unwrap {'state_dict': {...}} / {'model': {...}} (possibly nested once more)
    for _ in range(2):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                entries.append(key)
                break
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointMismatchError(f'no tensors found in the checkpoint (top-level keys: {sorted(obj)[:20]})')
    for prefix in _PREFIXES:
        with_prefix = [k for k in state if k.startswith(prefix)]
        if with_prefix and len(with_prefix) * 2 >= len(state):
            state = {k[len(prefix):]: state[k] for k in with_prefix}
    return state, '.'.join(entries)


def read_state_dict(source: Union[str, os.PathLike, Mapping], use_ema: bool = False) -> Dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` from a checkpoint, wrappers and prefixes removed (see `read_weights`).

    Args:
        source: a checkpoint path or loaded object.
        use_ema: prefer the EMA weights when present.

    Returns:
        The state dict.
    """
    return read_weights(source, use_ema)[0]


def _classifier_keys(model: nn.Module) -> List[str]:
    name = None
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    name = cfg.get('classifier') or ('head' if hasattr(model, 'head') else None)
    if name is None:
        return []
    names = [name] if isinstance(name, str) else list(name)
    return [f'{n}.{p}' for n in names for p in ('weight', 'bias')]


def load_checkpoint(
        model: nn.Module,
        source: Union[str, os.PathLike, Mapping],
        strict: bool = True,
        allow_classifier_change: bool = True,
) -> LoadReport:
    """Load a checkpoint into ``model``, tolerating a classifier of another size.

    Args:
        model: the network to load into (any ``nn.Module``).
        source: a checkpoint path or loaded object (see `read_weights`).
        strict: raise on any missing, unexpected or mis-shaped key other than the classifier; nothing is loaded then.
        allow_classifier_change: skip (with a warning) a classifier whose shape differs from the model's, e.g.
            ImageNet weights into a 10-class model.

    Returns:
        A ``LoadReport``: missing, unexpected and mis-shaped keys, and the dropped classifier.

    Raises:
        CheckpointMismatchError: with ``strict``, naming the keys that do not fit.

    Example:
        ```python
        model = timm.create_model('moganet_tiny', num_classes=10)
        report = load_checkpoint(model, 'moganet_tiny_sz224_8xbs128_ep300.pth.tar')   # drops the 1000-class head
        ```
    """
    state = read_state_dict(source)
    own = model.state_dict()
    report = LoadReport()
    classifier = set(_classifier_keys(model))
    for key, value in list(state.items()):
        base = key
        if key not in own:
            if allow_classifier_change and key in classifier:  # headless model (num_classes=0)
                report.dropped_classifier.append(key)
                del state[key]
            continue
        if tuple(own[key].shape) != tuple(value.shape):
            if allow_classifier_change and base in classifier:
                report.dropped_classifier.append(key)
            else:
                report.mis_shaped.append((key, tuple(value.shape), tuple(own[key].shape)))
            del state[key]
    report.unexpected = sorted(k for k in state if k not in own)
    report.missing = sorted(k for k in own if k not in state and k not in report.dropped_classifier
                            and k not in {m for m, _, _ in report.mis_shaped})
    if report.dropped_classifier:
        report.missing = [k for k in report.missing if k not in classifier]
        warnings.warn(f'classifier of another size in the checkpoint, kept the model\'s own: '
                      f'{report.dropped_classifier}')
    problems = report.missing or report.unexpected or report.mis_shaped
    where = source if isinstance(source, (str, os.PathLike)) else 'the given state dict'
    if problems and strict:
        error = CheckpointMismatchError(f'checkpoint {where} does not fit {model.__class__.__name__}:\n  '
                                        + report.describe())
        error.report = report
        raise error
    model.load_state_dict(state, strict=False)
    return report
