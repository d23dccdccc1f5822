"""Experiment trackers for ``fit``: Lightning's own loggers, chosen by name.

``csv`` is always on (the reports and resumed runs read ``metrics.csv``); ``tensorboard`` is on by default
(``tensorboard --logdir runs``); ``mlflow`` (a local SQLite store by default, see `moga_lab.utils.tracking`) and
``wandb`` are optional extras. A tracker that is asked for but missing or unreachable stops the run before it starts
(one line, exit 2); a tracker failing once the run has started only warns: checkpoints, ``metrics.csv`` and
``results.yaml`` are written regardless.
"""
import os
import warnings
from typing import Any, Dict, List, Optional, Sequence

from moga_lab.utils.tracking import TrackingError, check_tracking_uri, mlflow_artifact_location, resolve_tracking_uri

__all__ = ['LOGGERS', 'DEFAULT_LOGGERS', 'parse_loggers', 'check_loggers', 'build_loggers', 'log_figure',
           'log_final_metrics', 'TrackingError']

LOGGERS = ('csv', 'tensorboard', 'mlflow', 'wandb')
DEFAULT_LOGGERS = ('csv', 'tensorboard')
# logger -> (module to import, pip extra that installs it)
_NEEDS = {'tensorboard': ('tensorboard', None), 'mlflow': ('mlflow', 'tracking'), 'wandb': ('wandb', 'wandb')}
_MLFLOW_RUN_FILE = 'mlflow_run_id'  # a resumed run continues its MLflow run


def parse_loggers(text: str) -> tuple:
    """'tensorboard,mlflow' -> ('csv', 'tensorboard', 'mlflow'); unknown names raise naming the accepted ones."""
    names = [n.strip().lower() for n in str(text).split(',') if n.strip()]
    bad = [n for n in names if n not in LOGGERS]
    if bad:
        raise ValueError(f'--logger {",".join(bad)} is not accepted; accepted: any of {", ".join(LOGGERS)} '
                         f'(comma-separated; csv is always on)')
    return tuple(['csv'] + [n for n in LOGGERS[1:] if n in names])


def check_loggers(names: Sequence[str], tracking_uri: Optional[str] = None) -> None:
    """Fail before training when a requested tracker is not installed or its store cannot be reached."""
    import importlib.util
    for name in names:
        if name not in _NEEDS:
            continue
        module, extra = _NEEDS[name]
        if importlib.util.find_spec(module) is None:
            how = f"pip install 'moga_lab[{extra}]'" if extra else f'pip install {module}'
            raise TrackingError(f'--logger {name}: the {module} package is not installed; {how}, or leave {name} out '
                                f'of --logger')
    if 'mlflow' in names:
        check_tracking_uri(resolve_tracking_uri(tracking_uri))


def build_loggers(names: Sequence[str], run_dir: str, run_name: str, tracking_uri: Optional[str] = None,
                  experiment: str = 'fit') -> List[Any]:
    """Lightning loggers writing into ``run_dir`` (CSV: ``logs/``, TensorBoard: ``tensorboard/``)."""
    from lightning.pytorch.loggers import CSVLogger
    loggers: List[Any] = [CSVLogger(save_dir=run_dir, name='logs')]
    if 'tensorboard' in names:
        from lightning.pytorch.loggers import TensorBoardLogger
        # the hp_metric placeholder is replaced by the real test/val metrics in log_final_metrics
        loggers.append(TensorBoardLogger(save_dir=run_dir, name='tensorboard', default_hp_metric=False))
    if 'mlflow' in names:
        from lightning.pytorch.loggers import MLFlowLogger
        uri = resolve_tracking_uri(tracking_uri)
        id_file = os.path.join(run_dir, _MLFLOW_RUN_FILE)
        run_id = open(id_file).read().strip() if os.path.isfile(id_file) else None
        logger = MLFlowLogger(experiment_name=experiment, run_name=run_name, tracking_uri=uri, run_id=run_id,
                              artifact_location=mlflow_artifact_location(uri), log_model=False)
        if int(os.environ.get('LOCAL_RANK', 0)) == 0:
            with open(id_file, 'w') as f:
                f.write(str(logger.run_id))
        loggers.append(logger)
    if 'wandb' in names:
        from lightning.pytorch.loggers import WandbLogger
        loggers.append(WandbLogger(project='moga_lab', name=run_name, save_dir=run_dir))
    return loggers


def _warn(logger, what: str, error: Exception) -> None:
    warnings.warn(f'{type(logger).__name__}: could not log {what} ({error.__class__.__name__}: {error}); the run\'s '
                  f'files are unaffected')


def log_figure(loggers: Sequence[Any], tag: str, path: str, step: int = 0) -> None:
    """A PNG written by the run, shown by each tracker (TensorBoard image, MLflow artifact, W&B image)."""
    for logger in loggers:
        kind = type(logger).__name__
        try:
            if kind == 'TensorBoardLogger':
                import numpy as np
                from PIL import Image
                image = np.asarray(Image.open(path).convert('RGB'))
                logger.experiment.add_image(tag, image, global_step=step, dataformats='HWC')
            elif kind == 'MLFlowLogger':
                logger.experiment.log_artifact(logger.run_id, path, artifact_path='figures')
            elif kind == 'WandbLogger':
                logger.log_image(key=tag, images=[path], step=step)
        except Exception as error:  # noqa: BLE001 - tracking never loses the run
            _warn(logger, tag, error)


def log_final_metrics(loggers: Sequence[Any], hparams: Dict[str, Any], metrics: Dict[str, float]) -> None:
    """End of a run: hyper-parameters with the final metrics (TensorBoard's HParams view pairs them); the metrics as
    values for MLflow / W&B."""
    for logger in loggers:
        kind = type(logger).__name__
        try:
            if kind == 'TensorBoardLogger':
                logger.log_hyperparams(hparams, metrics=metrics)
            elif kind in ('MLFlowLogger', 'WandbLogger'):
                logger.log_metrics(metrics)
            if kind != 'CSVLogger':
                logger.save()
        except Exception as error:  # noqa: BLE001
            _warn(logger, 'the final metrics', error)
