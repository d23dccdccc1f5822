"""Load MogaNet (or any) weights from a local file, whatever wrapping they come in.

Handles the usual wrappings: ``{'state_dict': ...}`` (the authors' releases, Lightning), ``{'model': ...}``
(DeiT-style trainers), ``module.`` (DDP), ``_orig_mod.`` (torch.compile) and ``model.`` (a LightningModule
holding the network as ``self.model``) prefixes, and a classifier of another size (dropped, the model keeps
its own). Anything else that does not fit raises `CheckpointMismatchError` listing the missing,
unexpected and mis-shaped keys. Nothing is ever downloaded.

**Safety.** A pickled file can carry code that runs when it is unpickled. Files are therefore loaded as PyTorch and
timm load them, ``weights_only=True``, with only the few extra types real release files hold allowed
(`safe_globals`: the trainer's ``argparse.Namespace``, numpy scalars). A file that needs anything else is refused
in one line that names the types; ``trust=True`` (``--trust-weights`` on the command line) is the only way to
unpickle it fully. ``.safetensors`` files hold tensors only and are the recommended format for sharing weights
(``python -m moga_lab.cli.export``).

EMA weights (``state_dict_ema`` of timm's trainer, ``model_ema`` of DeiT-style ones) are taken instead of the raw
weights only when asked (``use_ema=True``, timm's rule for ``pretrained`` files); `read_weights` says which
entry was used.
"""
import argparse
import os
import pickle
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn

__all__ = ['CheckpointMismatchError', 'UntrustedCheckpointError', 'LoadReport', 'torch_load', 'safe_globals',
           'read_state_dict', 'read_weights', 'load_checkpoint', 'EMA_KEYS']

_WRAPPER_KEYS = ('state_dict', 'model', 'module', 'net')
_PREFIXES = ('module.', '_orig_mod.', 'model.')
EMA_KEYS = ('state_dict_ema', 'model_ema')


class CheckpointMismatchError(ValueError):
    """The checkpoint's keys or shapes do not fit the model (``report``: the `LoadReport`, where one was made)."""
    report: Optional['LoadReport'] = None


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


class UntrustedCheckpointError(CheckpointMismatchError):
    """The file needs Python objects that loading with ``weights_only=True`` does not rebuild; unpickling them could
    run code the file carries, so it happens only when the caller trusts the file (``trust=True``,
    ``--trust-weights``)."""


def _numpy_scalar_globals() -> List[Any]:
    """The numpy types older timm checkpoints hold (a ``metric`` or ``epoch`` saved as a numpy scalar): the scalar
    reconstructor and the dtypes of plain numbers, nothing that builds arrays or calls functions."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy ships with torch's wheels
        return []
    core = getattr(np, '_core', None) or np.core
    dtypes = [getattr(np.dtypes, name) for name in ('Float64DType', 'Float32DType', 'Float16DType', 'Int64DType',
                                                    'Int32DType', 'Int16DType', 'Int8DType', 'UInt8DType',
                                                    'BoolDType') if hasattr(np, 'dtypes') and hasattr(np.dtypes, name)]
    return [core.multiarray.scalar, np.dtype, *dtypes]


def safe_globals() -> List[Any]:
    """The types beyond tensors and plain containers that `torch_load` rebuilds without ``trust``: the
    ``argparse.Namespace`` of timm's (and the MogaNet authors') trainer, and numpy scalars and their dtypes (older timm
    checkpoints store the best metric as one). Each is rebuilt from data; none runs code named in the file."""
    return [argparse.Namespace, *_numpy_scalar_globals()]


def _unsafe_globals(path: str) -> List[str]:
    try:
        return [g for g in torch.serialization.get_unsafe_globals_in_checkpoint(path)
                if g not in {f'{t.__module__}.{t.__qualname__}' for t in safe_globals()}]
    except Exception:  # noqa: BLE001 - an old (non-zip) file: torch cannot list them without unpickling
        return []


def torch_load(path: Union[str, os.PathLike], trust: bool = False) -> Any:
    """A checkpoint file's object, loaded as PyTorch and timm recommend: ``weights_only=True`` with the types of
    `safe_globals` allowed. ``.safetensors`` files are read with safetensors (tensors only, never code).

    A file that needs other Python objects is refused (`UntrustedCheckpointError`, naming the types) unless
    ``trust=True``, which alone unpickles it fully -- any code the file carries then runs -- and warns that it did.

    Args:
        path: a local ``.pth`` / ``.pth.tar`` / ``.ckpt`` / ``.bin`` / ``.safetensors`` file.
        trust: allow full unpickling (only for a file whose source you trust).

    Returns:
        The loaded object (a dict of tensors for ``.safetensors``).

    Raises:
        UntrustedCheckpointError: the file needs types outside `safe_globals` and ``trust`` is False.
        CheckpointMismatchError: the file cannot be read at all.
    """
    path = os.fspath(path)
    if path.endswith('.safetensors'):
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(path, device='cpu')
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointMismatchError(f'cannot read {path!r} as safetensors: {str(error).splitlines()[0][:200]}') \
                from None
    try:
        with torch.serialization.safe_globals(safe_globals()):
            return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as safe_error:
        needs = _unsafe_globals(path) or re.findall(r'Unsupported global: GLOBAL ([\w.]+)', str(safe_error))
        if not needs:  # not a pickle problem: the file is no checkpoint at all
            raise CheckpointMismatchError(
                f'cannot read checkpoint {path!r}: {str(safe_error).splitlines()[-1][:200]} (expected a file written '
                f'by torch.save, or .safetensors)') from None
        if not trust:
            raise UntrustedCheckpointError(
                f'{path} needs Python objects that are not loaded without trust ({", ".join(needs[:5])}); unpickling '
                f'them can run code the file carries. Load it only if you trust its source: --trust-weights on the '
                f'command line, trust=True in the API (or re-save its tensors as .safetensors)') from None
    except Exception as error:  # noqa: BLE001 - not a torch.save file at all: one line, not a traceback
        raise CheckpointMismatchError(
            f'cannot read checkpoint {path!r}: {error.__class__.__name__}: {str(error).splitlines()[0][:200]} '
            f'(expected a file written by torch.save, or .safetensors)') from None
    warnings.warn(f'{path}: loaded with full unpickling because trust=True / --trust-weights was given; '
                  f'code stored in the file may have run', UserWarning, stacklevel=3)
    try:
        return torch.load(path, map_location='cpu', weights_only=False)
    except Exception as error:  # noqa: BLE001
        raise CheckpointMismatchError(
            f'cannot read checkpoint {path!r}: {error.__class__.__name__}: {str(error).splitlines()[0][:200]}') \
            from None


def read_weights(source: Union[str, os.PathLike, Mapping], use_ema: bool = False,
                 trust: bool = False) -> Tuple[Dict[str, torch.Tensor], str]:
    """A flat ``{name: tensor}`` from a checkpoint file or object, and the entry it came from.

    Wrappers (``state_dict``, ``model``, ``module.`` / ``model.`` prefixes, Lightning's ``model.``) are removed.

    Args:
        source: a path to a local ``.pth`` / ``.pth.tar`` / ``.ckpt`` / ``.safetensors`` file, or an already loaded
            checkpoint object.
        use_ema: prefer an EMA entry (``state_dict_ema``, ``model_ema``) when the checkpoint holds one.
        trust: unpickle a file that needs more than tensors, containers and `safe_globals` (see `torch_load`).

    Returns:
        ``(state, entry)``: the weights and the entry they came from (``'state_dict'``, ``'state_dict_ema'``,
        ``'model'``, ... or ``''`` for a bare dict).

    Raises:
        FileNotFoundError: the path does not exist (nothing is downloaded).
        UntrustedCheckpointError: the file needs full unpickling and ``trust`` is False.
        CheckpointMismatchError: the file cannot be read as a checkpoint.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'checkpoint file {path!r} does not exist (nothing is downloaded: '
                                    f'pass the path of a local .pth/.pth.tar/.ckpt/.safetensors file)')
        obj = torch_load(path, trust=trust)
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


def read_state_dict(source: Union[str, os.PathLike, Mapping], use_ema: bool = False,
                    trust: bool = False) -> Dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` from a checkpoint, wrappers and prefixes removed (see `read_weights`).

    Args:
        source: a checkpoint path or loaded object.
        use_ema: prefer the EMA weights when present.
        trust: allow full unpickling of the file (see `torch_load`).

    Returns:
        The state dict.
    """
    return read_weights(source, use_ema, trust)[0]


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
        trust: bool = False,
) -> LoadReport:
    """Load a checkpoint into ``model``, tolerating a classifier of another size.

    Args:
        model: the network to load into (any ``nn.Module``).
        source: a checkpoint path or loaded object (see `read_weights`).
        strict: raise on any missing, unexpected or mis-shaped key other than the classifier; nothing is loaded then.
        allow_classifier_change: skip (with a warning) a classifier whose shape differs from the model's, e.g.
            ImageNet weights into a 10-class model.
        trust: allow full unpickling of the file (see `torch_load`; off by default, as in torch and timm).

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
    state = read_state_dict(source, trust=trust)
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
