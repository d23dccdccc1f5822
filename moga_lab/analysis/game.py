"""The image game of Deng et al.: the players are the n = g x g patches of an image, and v(S) is the ground-truth
class's log-odds log p / (1 - p) = logit_y - logsumexp(other logits) on the image whose patches outside S show the
masking baseline (0 in normalised input space = the dataset's mean colour, the authors'; `BASELINES`).
``value='logit'`` and ``value='log-p'`` (log-softmax) are offered too. The estimators see only the value function
(`moga_lab.analysis.coalitions.ValueFn`)."""
import math
import warnings
from typing import Any, Optional, Sequence, Union, cast

import torch
import torch.nn as nn

from moga_lab.models.fuse import NATIVE_BF16, onednn_bf16

__all__ = ['ImageGame', 'VALUES', 'BASELINES', 'masking_baseline', 'logits_to_value']


VALUES = ('log-odds', 'logit', 'log-p')
"""What v(S) measures of the true class (``InteractionSettings.value``)."""

BASELINES = ('zero', 'pixel-mean', 'black', 'blur')
"""What masked patches show (`masking_baseline`): ``zero`` = 0 after normalisation, the data set's mean colour (the
authors', the default); ``pixel-mean`` = each pixel's mean over the training images (Deng et al.); ``black`` = pixel
value 0; ``blur`` = a Gaussian-blurred copy of the image."""


def masking_baseline(name: str, image: torch.Tensor, grid: int, mean: Sequence[float] = (0.0,),
                     std: Sequence[float] = (1.0,), pixel_mean: Optional[torch.Tensor] = None) -> torch.Tensor:
    """What the masked patches of ``image`` show, in normalised input space ([C, H, W], like ``image``).

    Args:
        name: one of `BASELINES`: ``zero`` (0, the data set's mean colour: the authors'), ``pixel-mean`` (each pixel's
            mean over the training images, Deng et al.; pass ``pixel_mean``), ``black`` (pixel value 0, i.e.
            -mean / std per channel), ``blur`` (the image blurred by a Gaussian of sigma = one patch's side: the
            patch's local average, with no edge of its own).
        image: the normalised image [C, H, W].
        grid: patches per side (sets the blur's sigma).
        mean: the normalisation's per-channel mean (``black``).
        std: the normalisation's per-channel std (``black``).
        pixel_mean: the mean training image, normalised [C, H, W] (``pixel-mean``; see
            `moga_lab.loaders.pixel_mean_image`).

    Returns:
        The baseline image.

    Raises:
        ValueError: an unknown name, or ``pixel-mean`` without ``pixel_mean``.
    """
    if name not in BASELINES:
        raise ValueError(f'baseline {name!r} is not accepted; accepted: {", ".join(BASELINES)}')
    if name == 'zero':
        return torch.zeros_like(image)
    if name == 'black':
        m = torch.as_tensor(mean, dtype=image.dtype, device=image.device).view(-1, 1, 1)
        s = torch.as_tensor(std, dtype=image.dtype, device=image.device).view(-1, 1, 1)
        return ((0 - m) / s).expand_as(image).clone()
    if name == 'pixel-mean':
        if pixel_mean is None:
            raise ValueError("baseline 'pixel-mean' needs the mean training image (pixel_mean=...; the commands "
                             'compute it with moga_lab.loaders.pixel_mean_image)')
        if tuple(pixel_mean.shape) != tuple(image.shape):
            raise ValueError(f'pixel_mean has shape {tuple(pixel_mean.shape)}; the image {tuple(image.shape)}')
        return pixel_mean.to(image.device, image.dtype).clone()
    from torchvision.transforms.v2.functional import gaussian_blur
    H, W = image.shape[-2:]
    sigma = max(H, W) / grid
    kernel = min(2 * math.ceil(3 * sigma) + 1, 2 * ((min(H, W) - 1) // 2) + 1)  # odd, padding within the image
    return gaussian_blur(image, [kernel, kernel], [sigma, sigma])


class ImageGame:
    """v(S) for one image: ``game(masks)`` maps bool [B, grid²] -> float [B] (float64 on CPU).

    Patch (r, c) covers rows floor(r H / grid) .. and columns likewise, so H and W need not be multiples of the grid.
    Patches outside S are set to ``baseline`` in normalised input space.

    Args:
        model: the classifier, in eval mode.
        image: one normalised image [C, H, W].
        label: the class whose value is measured (the ground truth).
        grid: patches per side.
        baseline: the value masked patches take (0 = the dataset's mean colour).
        value: 'log-odds', 'logit' or 'log-p' of ``label``.
        bf16: bf16 autocast for the trunk, head in fp32.
        pad_to: pad every batch to this size (one shape for ``torch.compile``).
    """

    def __init__(self, model: nn.Module, image: torch.Tensor, label: int, grid: int, baseline: Union[float, torch.Tensor] = 0.0,
                 value: str = 'log-odds', bf16: bool = False, pad_to: Optional[int] = None):
        if value not in VALUES:
            raise ValueError(f'value={value!r} is not supported; accepted: {", ".join(VALUES)}')
        if image.ndim != 3:
            raise ValueError(f'image must be [C, H, W]; got shape {tuple(image.shape)}')
        C, H, W = image.shape
        if not 1 <= grid <= min(H, W):
            raise ValueError(f'grid={grid} is not valid for a {H}x{W} image; accepted: 1..{min(H, W)}')
        self.model, self.label, self.grid, self.value, self.bf16 = model, int(label), grid, value, bf16
        if bf16 and image.device.type == 'cpu' and not onednn_bf16():
            warnings.warn(f'bf16=True on a CPU without {NATIVE_BF16}: autocast emulates it here, many times slower '
                          'than float32 and no more precise; '
                          'use bf16=False (leave out --bf16) on this machine', UserWarning, stacklevel=2)
        self.pad_to = pad_to  # a compiled model sees one batch shape only (no recompiles for the last batch)
        device = next(model.parameters()).device if any(True for _ in model.parameters()) else image.device
        self.image = image.to(device)
        self.baseline = torch.full_like(self.image, float(baseline)) if not torch.is_tensor(baseline) \
            else baseline.to(device).expand_as(self.image)
        rows = (torch.arange(H) * grid // H)
        cols = (torch.arange(W) * grid // W)
        self.patch_of_pixel = (rows[:, None] * grid + cols[None, :]).to(device)  # [H, W] -> player index
        self.n_players = grid * grid

    def inputs(self, masks: torch.Tensor) -> torch.Tensor:
        """[B, n] bool -> [B, C, H, W] masked images (channels_last)."""
        keep = masks.to(self.image.device)[:, self.patch_of_pixel].unsqueeze(1)  # [B, 1, H, W]
        x = torch.where(keep, self.image.unsqueeze(0), self.baseline.unsqueeze(0))
        return x.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, masks: torch.Tensor) -> torch.Tensor:
        B = len(masks)
        if self.pad_to and B < self.pad_to:
            masks = torch.cat([masks, masks[:1].expand(self.pad_to - B, -1)])
        x = self.inputs(masks)
        if self.bf16 and hasattr(self.model, 'forward_features') and hasattr(self.model, 'forward_head'):
            # bf16 for the trunk only: logits rounded to bf16 (8-bit mantissa) would be off by ~0.04 at |logit| ~ 10,
            # more than a trained model's typical interaction; the head (pool + norm + linear) is cheap in fp32
            net = cast(Any, self.model)  # (a timm-style classifier: checked above)
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                features = net.forward_features(x)
            with torch.autocast(x.device.type, enabled=False):
                logits = net.forward_head(features.float())
        else:
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                logits = self.model(x)
        return logits_to_value(logits[:B].float(), self.label, self.value)


def logits_to_value(logits: torch.Tensor, label: int, value: str = 'log-odds') -> torch.Tensor:
    """The value of ``label`` in each row of ``logits`` [B, classes]: its log-odds (default), logit or log-softmax.

    Args:
        logits: [B, classes].
        label: the class.
        value: one of `VALUES`.
    """
    if value == 'logit':
        return logits[:, label]
    if value == 'log-p':
        return logits.log_softmax(-1)[:, label]
    others = torch.cat([logits[:, :label], logits[:, label + 1:]], dim=1)
    return logits[:, label] - others.logsumexp(-1)  # log p / (1 - p), stable
