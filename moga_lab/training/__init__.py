"""Training: the LightningModule, run configuration and presets, the fit orchestration."""
from .config import ConfigError, DataConfig, ModelConfig, OptimConfig, RunConfig, TrainerConfig, paper_recipe, \
    small_data_recipe
from .factory import build_model
from .module import ImageClassifier, NonFiniteLossError
from .run import FitResult, build_datamodule, fit, prepare

__all__ = ['ConfigError', 'DataConfig', 'ModelConfig', 'OptimConfig', 'RunConfig', 'TrainerConfig', 'paper_recipe',
           'small_data_recipe', 'build_model', 'ImageClassifier', 'NonFiniteLossError', 'FitResult',
           'build_datamodule', 'fit', 'prepare']
