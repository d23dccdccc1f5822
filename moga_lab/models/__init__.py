"""MogaNet models; importing this registers ``moganet_*`` with timm."""
from moga_lab.models.moganet import MogaNet, FusedMogaNet, MOGANET_ARCHS, GATE_ACTIVATIONS, resolve_variant
from moga_lab.models.checkpoint import (CheckpointMismatchError, UntrustedCheckpointError, load_checkpoint, read_state_dict,
                         read_weights, torch_load)
from moga_lab.models.factory import create_classifier

__all__ = ['MogaNet', 'FusedMogaNet', 'MOGANET_ARCHS', 'GATE_ACTIVATIONS', 'resolve_variant', 'load_checkpoint',
           'read_state_dict', 'read_weights', 'torch_load', 'CheckpointMismatchError', 'UntrustedCheckpointError',
           'create_classifier']
