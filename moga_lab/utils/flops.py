"""Multiply-accumulates of a forward pass, through torch's own ``FlopCounterMode`` (it counts the matrix products and
convolutions at the aten level, so every model and every layer type is covered without per-module rules)."""
import torch
import torch.nn as nn

__all__ = ['count_macs']


def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of ``model(example)`` in eval mode: the papers' "FLOPs" (torch counts 2 per MAC).

    Args:
        model: any module.
        example: one input batch, e.g. ``torch.zeros(1, 3, 224, 224)`` for a per-image count.
    """
    from torch.utils.flop_counter import FlopCounterMode
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
