"""Training: the LightningModule, run configuration and presets, the fit orchestration."""
from moga_lab.training.config import ConfigError, DataConfig, ModelConfig, OptimConfig, RunConfig, TrainerConfig, paper_recipe, \
    small_data_recipe
from moga_lab.training.factory import build_model
from moga_lab.training.module import ImageClassifier, NonFiniteLossError
from moga_lab.training.run import FitResult, build_datamodule, fit, prepare

__all__ = ['ConfigError', 'DataConfig', 'ModelConfig', 'OptimConfig', 'RunConfig', 'TrainerConfig', 'paper_recipe',
           'small_data_recipe', 'build_model', 'ImageClassifier', 'NonFiniteLossError', 'FitResult',
           'build_datamodule', 'fit', 'prepare']
