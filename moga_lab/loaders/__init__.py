"""What the user named on the command line, turned into models and the images to show them.

Two kinds of sources:

* a checkpoint written by ``moga_lab.cli.fit`` (``--checkpoint runs/x/best.ckpt``): the network it trained, its data's
  eval transform, class names and test set;
* a timm model name plus a local weights file (``--model moganet_tiny --weights moganet_tiny_sz224_8xbs128_ep300.pth.tar``,
  ``--model convnext_tiny --weights convnext_tiny.pth``): the authors' released MogaNet files (``{'state_dict': ...}``)
  or timm-format ConvNeXt / Swin weights (the original FB / MS formats too, through timm's own converters), evaluated
  with the model's pretrained config (resize by crop_pct, centre crop, interpolation, mean/std) on an ImageFolder.

`load_models` gives a `NamedModel` per source; `load_eval_images` draws, reproducibly, the images all
of them are shown (one transform for all when several are compared, see `EVAL_TRANSFORMS`). Every analysis
command and study script loads models here; this module does not import the training package.

ImageFolder class order: a 1000-class ImageNet model's labels are taken from folder names that are WordNet IDs
(``n01440764`` ...), so a subset of ImageNet's class folders works too; otherwise the sorted folder names are the
class indices 0..K-1 and their number must equal the classifier's K.
"""
from moga_lab.loaders.images import (EVAL_TRANSFORMS, PAPER_TRANSFORM, EvalImages, describe_transform, eval_dataset,
                                     load_eval_images, pixel_mean_image, transform_config, write_image_list)
from moga_lab.loaders.models import (FIT_METADATA_KEY, NamedModel, fit_contents, load_classifier, load_classifiers,
                                     load_models, load_pretrained)

__all__ = ['NamedModel', 'EvalImages', 'load_classifier', 'load_pretrained', 'load_models', 'load_classifiers',
           'load_eval_images', 'eval_dataset', 'transform_config', 'describe_transform', 'PAPER_TRANSFORM',
           'EVAL_TRANSFORMS', 'pixel_mean_image', 'FIT_METADATA_KEY', 'fit_contents', 'write_image_list']
