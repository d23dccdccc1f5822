"""moga_lab: MogaNet research package (models, Lightning training, interaction and Grad-CAM analysis).

``import moga_lab`` registers the ``moganet_*`` models with timm.
"""
from moga_lab import models  # noqa: F401  (registers moganet_* with timm)
from moga_lab.models import MogaNet, load_checkpoint

__version__ = '0.1.0'
__all__ = ['MogaNet', 'load_checkpoint', '__version__']
