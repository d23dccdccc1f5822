"""A study's (row, seed) trainings as jobs on a scheduler, through submitit.

``local``: each job is its own process on this machine, at most ``concurrency`` at a time, each pinned to
``threads`` intra-op threads (two torch processes on 2 cores must not oversubscribe them); ``slurm``: a job array
(``--partition``, ``--time``, ``--gpus``, ``--array-parallelism``). A job is `moga_lab.studies.common.train_variant`,
which resumes from its own ``last.ckpt``: resubmitting a grid (or a preempted job, via submitit's ``checkpoint``)
continues where each job stopped, and finished jobs return at once. Job logs go to ``<out>/jobs/``.
"""
import os
import shutil
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

__all__ = ['TrainJob', 'JobOptions', 'run_jobs', 'EXECUTORS', 'SchedulerError']

EXECUTORS = ('inline', 'local', 'slurm')


class SchedulerError(ValueError):
    """The scheduler asked for is not available (reported in one line, before any job)."""


@dataclass
class JobOptions:
    """How a grid runs: the executor and its options (local concurrency and threads per job; Slurm partition, time
    limit, GPUs, CPUs, array parallelism)."""
    executor: str = 'inline'
    concurrency: int = 1          # local: jobs at once
    threads: Optional[int] = None  # local: intra-op threads per job (default: cores // concurrency)
    partition: Optional[str] = None
    time_min: int = 120
    gpus: int = 0
    cpus: int = 2
    array_parallelism: int = 16

    def check(self) -> None:
        """Raise `SchedulerError` (one line) when the executor cannot run here."""
        if self.executor not in EXECUTORS:
            raise SchedulerError(f'--executor {self.executor!r} is not accepted; accepted: {", ".join(EXECUTORS)}')
        if self.executor == 'inline':
            return
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise SchedulerError("--executor needs submitit, which is not installed: pip install submitit "
                                 "(or use --executor inline)") from None
        if self.concurrency < 1:
            raise SchedulerError(f'--concurrency={self.concurrency} must be >= 1')
        if self.executor == 'slurm' and shutil.which('sbatch') is None:
            raise SchedulerError('--executor slurm: no Slurm on this machine (sbatch is not on PATH); run on a Slurm '
                                 'login node, or use --executor local')


class TrainJob:
    """One (row, seed) training; picklable, so submitit can run it in another process or on another machine."""

    def __init__(self, run_dir: str, budget: Dict[str, Any], seed: int, switches: Dict[str, Any],
                 model_name: Optional[str] = None, threads: Optional[int] = None):
        self.run_dir, self.budget, self.seed, self.switches = run_dir, budget, seed, switches
        self.model_name, self.threads = model_name, threads

    def __call__(self) -> Dict[str, Any]:
        if self.threads:
            os.environ['OMP_NUM_THREADS'] = str(self.threads)
            import torch
            torch.set_num_threads(self.threads)
        from moga_lab.studies.common import Budget, train_variant
        return train_variant(self.run_dir, Budget(**self.budget), self.seed, self.model_name, **self.switches)

    def checkpoint(self):
        """Preempted or timed out on Slurm: requeue; the training resumes from its last.ckpt."""
        import submitit
        return submitit.helpers.DelayedSubmission(TrainJob(self.run_dir, self.budget, self.seed, self.switches,
                                                           self.model_name, self.threads))

    @property
    def name(self) -> str:
        """The run directory, relative to the working directory (for progress lines)."""
        return os.path.relpath(self.run_dir)


def _finished(job: TrainJob) -> bool:
    return os.path.isfile(os.path.join(job.run_dir, 'results.yaml'))


def run_jobs(jobs: Sequence[TrainJob], options: JobOptions, folder: str, progress: bool = True) -> List[str]:
    """Run ``jobs`` (skipping finished ones) as ``options`` says; returns the names of jobs that failed (their
    error is in ``folder``'s logs). ``inline`` runs them one after another in this process."""
    todo = [j for j in jobs if not _finished(j)]
    failed: List[str] = []
    if not todo:
        return failed
    if options.executor == 'inline':
        for j in todo:
            print(f'[jobs] {j.name}', flush=True)
            j()
        return failed
    import submitit
    os.makedirs(folder, exist_ok=True)
    if options.executor == 'local':
        cores = os.cpu_count() or 1
        threads = options.threads or max(1, cores // options.concurrency)
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=options.time_min)
        pending = [TrainJob(**{**j.__dict__, 'threads': threads}) for j in todo]
        running: List[tuple] = []
        print(f'[jobs] {len(pending)} jobs, {options.concurrency} at a time, {threads} thread(s) each; logs in {folder}',
              flush=True)
        while pending or running:
            while pending and len(running) < options.concurrency:
                j = pending.pop(0)
                running.append((j, executor.submit(j)))
                print(f'[jobs] started {j.name}', flush=True)
            handle = next(submitit.helpers.as_completed([h for _, h in running], poll_frequency=2))
            j = next(j for j, h in running if h is handle)
            running = [(r, h) for r, h in running if h is not handle]
            try:
                handle.result()
                print(f'[jobs] finished {j.name}', flush=True)
            except Exception as error:  # noqa: BLE001 - one failed job must not stop the grid
                failed.append(j.name)
                print(f'[jobs] FAILED {j.name}: {str(error).strip().splitlines()[-1][:300]}', file=sys.stderr,
                      flush=True)
        return failed
    executor = submitit.AutoExecutor(folder=folder, cluster='slurm')
    params: Dict[str, Any] = dict(timeout_min=options.time_min, cpus_per_task=options.cpus,
                                  slurm_array_parallelism=options.array_parallelism)
    if options.partition:
        params['slurm_partition'] = options.partition
    if options.gpus:
        params['gpus_per_node'] = options.gpus
    executor.update_parameters(**params)
    with executor.batch():
        handles = [(j, executor.submit(j)) for j in todo]
    print(f'[jobs] submitted a Slurm array of {len(handles)} jobs ({handles[0][1].job_id.split("_")[0]}); logs in '
          f'{folder}. Run the same command again after they finish to write the report.', flush=True)
    return failed
