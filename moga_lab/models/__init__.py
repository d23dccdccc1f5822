"""MogaNet models; importing this registers ``moganet_*`` with timm."""
from .moganet import MogaNet, MOGANET_ARCHS, GATE_ACTIVATIONS, resolve_variant
from .checkpoint import load_checkpoint, read_state_dict, read_weights, CheckpointMismatchError
from .factory import create_classifier

__all__ = ['MogaNet', 'MOGANET_ARCHS', 'GATE_ACTIVATIONS', 'resolve_variant', 'load_checkpoint',
           'read_state_dict', 'read_weights', 'CheckpointMismatchError', 'create_classifier']
