"""MogaNet models; importing this registers ``moganet_*`` with timm."""
from .moganet import MogaNet, MOGANET_ARCHS, GATE_ACTIVATIONS, resolve_variant
from .checkpoint import (CheckpointMismatchError, UntrustedCheckpointError, load_checkpoint, read_state_dict,
                         read_weights, torch_load)
from .factory import create_classifier

__all__ = ['MogaNet', 'MOGANET_ARCHS', 'GATE_ACTIVATIONS', 'resolve_variant', 'load_checkpoint',
           'read_state_dict', 'read_weights', 'torch_load', 'CheckpointMismatchError', 'UntrustedCheckpointError',
           'create_classifier']
