"""The study store: each row of a study (an ablation row, a compared model, an interaction run) as an MLflow run.

Local by default: a SQLite file, ``runs/mlflow.db`` (browse it with ``mlflow ui --backend-store-uri
sqlite:///runs/mlflow.db``), artifacts beside it in ``runs/mlartifacts``; ``runs/mlflow.db.lock`` lets commands that
start together create it one at a time. One MLflow experiment per study (``ablation``, ``compare``, ``interaction``
unless named); a row's seeds are child runs of the row's run. Recording the
same row again replaces its run, so a re-run report does not duplicate rows.

What is fatal: an explicitly named store that cannot be reached, or mlflow missing when a store was named, stop the
command before any work (one line, exit 2). The default store with mlflow missing is skipped with a one-line notice.
A failure while recording after the work is done only warns: every result is in the study's CSV files first.
"""
import contextlib
import os
import sys
import warnings
from typing import Any, Iterable, Mapping, Optional

__all__ = ['DEFAULT_TRACKING_URI', 'TrackingError', 'StudyStore', 'open_study_store', 'safe_record', 'check_tracking_uri',
           'mlflow_artifact_location', 'add_tracking_arguments', 'resolve_tracking_uri']

DEFAULT_TRACKING_URI = 'sqlite:///runs/mlflow.db'
_KEY_TAG = 'moga_lab.key'


class TrackingError(ValueError):
    """A tracker asked for is missing or cannot be reached (reported in one line before any work)."""


def resolve_tracking_uri(uri: Optional[str] = None) -> str:
    """The store to use: the one named, else ``$MLFLOW_TRACKING_URI``, else `DEFAULT_TRACKING_URI`."""
    return uri or os.environ.get('MLFLOW_TRACKING_URI') or DEFAULT_TRACKING_URI


def _sqlite_path(uri: str) -> Optional[str]:
    return uri[len('sqlite:///'):] if uri.startswith('sqlite:///') else None


STORE_LOCK_TIMEOUT_S = 600  # a schema migration takes seconds; ten minutes means a command holding it is stuck


@contextlib.contextmanager
def _store_lock(uri: str):
    """Held while a SQLite store is created or an experiment added to it. Two commands that start together (a study's
    units at concurrency 2) would otherwise both run MLflow's schema migrations on a new file and one would fail with
    ``duplicate column name``; MLflow does not serialise this itself. Servers serialise on their side. Waiting longer
    than `STORE_LOCK_TIMEOUT_S` is a `TrackingError` naming the lock."""
    path = _sqlite_path(uri)
    if path is None:
        yield
        return
    import filelock
    lock = filelock.FileLock(os.path.abspath(path) + '.lock')
    try:
        lock.acquire(timeout=STORE_LOCK_TIMEOUT_S)
    except filelock.Timeout:
        raise TrackingError(f'the tracking store {uri}: another command has held {lock.lock_file} for '
                            f'{STORE_LOCK_TIMEOUT_S} s; stop the command that holds it (a lock file no command holds '
                            f'is not a problem), or pass --no-tracking') from None
    try:
        yield
    finally:
        lock.release()


def mlflow_artifact_location(uri: str) -> Optional[str]:
    """Artifacts beside a SQLite store (``runs/mlartifacts`` for ``runs/mlflow.db``); the server's own otherwise."""
    path = _sqlite_path(uri)
    if path is None:
        return None
    from pathlib import Path
    return Path(os.path.abspath(os.path.join(os.path.dirname(path) or '.', 'mlartifacts'))).as_uri()


def check_tracking_uri(uri: str) -> None:
    """Reach the store once (creating a SQLite file and its folder): a `TrackingError` naming the problem."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise TrackingError(f"the tracking store {uri} needs mlflow, which is not installed: pip install "
                            f"'moga_lab[tracking]' (or pass --no-tracking)") from None
    path = _sqlite_path(uri)
    if path is not None:
        folder = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as error:
            raise TrackingError(f'--tracking-uri {uri}: cannot create {folder} ({error.strerror})') from None
    elif not uri.startswith(('http://', 'https://', 'file:', 'databricks', 'postgresql', 'mysql')):
        raise TrackingError(f'--tracking-uri {uri!r} is not accepted; accepted: sqlite:///PATH.db, http(s)://HOST:PORT '
                            f'of an MLflow server, or another MLflow store URI')
    from mlflow import MlflowClient
    # one quick attempt (MLflow's default retries a dead server with back-off for minutes)
    quick = {'MLFLOW_HTTP_REQUEST_MAX_RETRIES': '0', 'MLFLOW_HTTP_REQUEST_TIMEOUT': '10'}
    saved = {k: os.environ.get(k) for k in quick}
    os.environ.update(quick)
    try:
        import logging
        logging.getLogger('alembic').setLevel(logging.WARNING)
        with warnings.catch_warnings(), _store_lock(uri):
            warnings.simplefilter('ignore')
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except TrackingError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure to reach the store is the same user-facing problem
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else error.__class__.__name__
        raise TrackingError(f'the tracking store {uri} cannot be reached ({first}); start the server, fix the URI, '
                            f'or pass --no-tracking') from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class StudyStore:
    """Writes runs into one MLflow experiment of a store (see the module docstring)."""

    def __init__(self, uri: str, experiment: str):
        from mlflow import MlflowClient
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        with _store_lock(uri):  # two commands creating the same experiment at once: one creates, the other finds it
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = found.experiment_id if found else self.client.create_experiment(
                experiment, artifact_location=mlflow_artifact_location(uri))
        self.experiment = experiment

    def _replace(self, key: str) -> None:
        for run in self.client.search_runs([self.experiment_id], filter_string=f"tags.`{_KEY_TAG}` = '{key}'"):
            self.client.delete_run(run.info.run_id)

    def record(self, key: str, params: Mapping[str, Any], metrics: Mapping[str, float],
               artifacts: Iterable[str] = (), tags: Optional[Mapping[str, str]] = None,
               parent_run_id: Optional[str] = None, name: Optional[str] = None) -> str:
        """One finished run: ``params`` (strings), ``metrics`` (NaN/None skipped), ``artifacts`` (existing files).
        ``key`` identifies the row across re-runs (its old run is replaced). Returns the run id."""
        self._replace(key)
        all_tags = {_KEY_TAG: key, **{k: str(v) for k, v in (tags or {}).items()}}
        if parent_run_id:
            all_tags['mlflow.parentRunId'] = parent_run_id
        run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=name or key)
        run_id = run.info.run_id
        for k, v in params.items():
            self.client.log_param(run_id, k, str(v)[:6000])
        for k, v in metrics.items():
            if v is not None and v == v:
                self.client.log_metric(run_id, k, float(v))
        for path in artifacts:
            if path and os.path.isfile(path):
                self.client.log_artifact(run_id, path)
        self.client.set_terminated(run_id)
        return run_id


def open_study_store(uri: Optional[str], experiment: str, enabled: bool = True) -> Optional[StudyStore]:
    """The store a study records into, or None (``enabled=False``, or the default store with mlflow missing).
    Raises `TrackingError` when a named store is unusable; call it before the study's work starts."""
    if not enabled:
        return None
    named = uri is not None
    uri = resolve_tracking_uri(uri)
    try:
        check_tracking_uri(uri)
    except TrackingError as error:
        if not named and 'not installed' in str(error):
            print(f'note: not recorded in a study store ({error})', file=sys.stderr)
            return None
        raise
    return StudyStore(uri, experiment)


def safe_record(store: Optional[StudyStore], *args, **kwargs) -> Optional[str]:
    """`StudyStore.record` that warns instead of raising: the study's own files are already written."""
    if store is None:
        return None
    try:
        return store.record(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - tracking never loses a study
        warnings.warn(f'study store {store.uri}: could not record {args[0] if args else ""} '
                      f'({error.__class__.__name__}: {error}); the CSV files hold the results')
        return None


def add_tracking_arguments(parser, experiment: str) -> None:
    """``--tracking-uri``, ``--experiment``, ``--no-tracking`` for a study command."""
    parser.add_argument('--tracking-uri', default=None,
                        help=f'MLflow store for the study (default {DEFAULT_TRACKING_URI}, or $MLFLOW_TRACKING_URI); '
                             f'browse: mlflow ui --backend-store-uri sqlite:///runs/mlflow.db')
    parser.add_argument('--experiment', default=experiment, help=f'MLflow experiment name (default {experiment})')
    parser.add_argument('--no-tracking', action='store_true', help='record nothing in a study store')
