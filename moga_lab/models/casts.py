"""Weights cast once for CPU autocast and reused while unchanged: the fused inference model's convolutions and head
(`moga_lab.models.fuse`).

Autocast caches the casts of parameters only inside one autocast region, never of buffers (the fused model's folded
weights are buffers), so every forward casts ~500 weights again; these modules keep the copy instead.
"""
import copy
import weakref
from typing import Dict, Optional, overload

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['CastCache', 'CastCachedConv2d', 'CastCachedLinear', 'with_cast_cache']


class CastCache:
    """One module's weights cast to a low precision, each made once and reused while the weight is unchanged.

    Under CPU autocast every convolution casts its float32 weight and bias to bfloat16 again on every call (~500
    casts per MogaNet-XT forward, 15 % of its time at batch 1: the folded weights are buffers, which autocast never
    caches). The copy is the same cast, so the outputs are bit-identical. A copy is valid while its weight is the same
    tensor (a weak reference), neither changed in place (its version counter) nor given new data (``.data =``,
    ``.to()``: the entry holds the old storage, so no other tensor can take its address). Not used with gradients
    enabled (the copy would cut the weight out of the graph), for inference-mode tensors (no version counter) nor
    under torch.compile. The cache belongs to its module; copies and pickles of the module start empty."""

    def __init__(self) -> None:
        self._entries: Dict[int, tuple] = {}

    @overload
    def __call__(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor: ...

    @overload
    def __call__(self, t: None, dtype: torch.dtype) -> None: ...

    def __call__(self, t: Optional[torch.Tensor], dtype: torch.dtype) -> Optional[torch.Tensor]:
        """``t.to(dtype)``, from the cache where it is still valid."""
        if t is None or t.dtype == dtype:
            return t
        if torch.is_grad_enabled() or t.is_inference() or torch.compiler.is_compiling():
            return t.to(dtype)
        key, entries = id(t), self._entries
        hit = entries.get(key)
        if hit is not None and hit[0]() is t and hit[1:4] == (t._version, dtype, t.data_ptr()):
            return hit[5]
        copy_ = t.to(dtype)

        def forget(_: object, k: int = key) -> None:  # the weight is gone: so is its copy
            entries.pop(k, None)
        entries[key] = (weakref.ref(t, forget), t._version, dtype, t.data_ptr(), t.untyped_storage(), copy_)
        return copy_

    @overload
    def lowp(self, t: torch.Tensor) -> torch.Tensor: ...

    @overload
    def lowp(self, t: None) -> None: ...

    def lowp(self, t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """A weight as CPU autocast would cast it for a convolution or linear layer here (from the cache); the weight
        itself outside autocast."""
        if t is not None and t.dtype == torch.float32 and torch.is_autocast_enabled('cpu'):
            return self(t, torch.get_autocast_dtype('cpu'))
        return t

    def __len__(self) -> int:
        return len(self._entries)

    def __deepcopy__(self, memo) -> 'CastCache':
        return CastCache()

    def __getstate__(self):
        return {}

    def __setstate__(self, state) -> None:
        self._entries = {}


class CastCachedConv2d(nn.Conv2d):
    """nn.Conv2d whose weight and bias reach autocast already cast (`CastCache`): the fused model's convolutions."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.casts = CastCache()

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> 'CastCachedConv2d':
        """The same convolution (hyperparameters, weights, device and dtype)."""
        # made on the meta device (as nn.utils.skip_init): the weights come from ``conv``, and drawing fresh ones
        # would move the caller's random stream
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                  conv.groups, conv.bias is not None, conv.padding_mode, device='meta', dtype=conv.weight.dtype)
        new = new.to_empty(device=conv.weight.device)
        new.load_state_dict(conv.state_dict())
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.casts.lowp(self.weight), self.casts.lowp(self.bias))


class CastCachedLinear(nn.Linear):
    """nn.Linear whose weight and bias reach autocast already cast (`CastCache`): the fused model's head."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.casts = CastCache()

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> 'CastCachedLinear':
        """The same linear layer (sizes, weights, device and dtype)."""
        new = cls(linear.in_features, linear.out_features, linear.bias is not None, device='meta',
                  dtype=linear.weight.dtype).to_empty(device=linear.weight.device)
        new.load_state_dict(linear.state_dict())
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.casts.lowp(self.weight), self.casts.lowp(self.bias))


def with_cast_cache(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` in which every plain nn.Conv2d and nn.Linear is its cast-caching twin (same weights).

    Args:
        module: any module (a block's gate, value, depth-wise conv, a stem, the head).
    """
    if type(module) is nn.Conv2d:
        return CastCachedConv2d.from_conv(module)
    if type(module) is nn.Linear:
        return CastCachedLinear.from_linear(module)
    module = copy.deepcopy(module)
    for name, child in list(module.named_children()):
        setattr(module, name, with_cast_cache(child))
    return module
