"""moga_lab: MogaNet research package (models, Lightning training, interaction and Grad-CAM analysis, studies).

``import moga_lab`` registers the ``moganet_*`` models with timm and imports nothing else heavy: the subpackages
load on first use (``moga_lab.training`` brings Lightning; the analysis never needs it).

Public API: the names below and the subpackages' own ``__all__``:

- `moga_lab.models`: `MogaNet`, the timm factories, `load_checkpoint`, `create_classifier`;
- `moga_lab.data`: the LightningDataModules (Fashion-MNIST, CIFAR, ImageFolder, synthetic);
- `moga_lab.training`: `RunConfig` and friends, `fit`, `small_data_recipe`, `paper_recipe`, `ImageClassifier`;
- `moga_lab.analysis`: interactions (`game`, `estimate`, `curves`, `shared`, `interaction`, `strength`), `gradcam`,
  `plots`, statistics over seeds and claims (`seeds`, `uncertainty`, `power`);
- `moga_lab.loaders`: models and images from what a user names;
- `moga_lab.studies`: the resumable runner, claims registries and their family-wise tests.
"""
import importlib

from moga_lab import models  # noqa: F401 (registers moganet_* with timm)
from moga_lab.models import MogaNet, create_classifier, load_checkpoint

__version__ = '1.0.0'
SUBPACKAGES = ('models', 'data', 'training', 'analysis', 'loaders', 'studies', 'cli', 'utils')
__all__ = ['MogaNet', 'create_classifier', 'load_checkpoint', '__version__', *SUBPACKAGES]


def __getattr__(name):
    if name in SUBPACKAGES:  # PEP 562: moga_lab.training etc. import on first use
        return importlib.import_module(f'moga_lab.{name}')
    raise AttributeError(f'module moga_lab has no attribute {name!r}')
