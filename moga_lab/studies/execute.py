"""Running a study's units: one scheduling loop (`run_study`) over pluggable executors: here, one after another
(``inline``), as submitit processes on this machine (``local``) or as Slurm jobs (``slurm``). A unit starts once the
units it needs are finished and when its estimate ends before the deadline; a SIGTERM or SIGINT to the runner is
passed on to the running units, which stop resumable, never finished. submitit carries each unit's command line to
its process or node; the ordering, the deadline and the stop are ours, because submitit has no notion of a study."""
import contextlib
import datetime as dt
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, cast

from moga_lab.studies.spec import COMMAND_FILE, LOG_FILE, SLURM_JOB_FILE, Study, StudyError, Unit, executable, select_units
from moga_lab.studies.state import (paced_minutes, portable_command, queued_slurm_job, read_record, recorded_command,
                                    refuse_queued, unit_state, write_record)
from moga_lab.utils.atomic import atomic_write_text

__all__ = ['run_study', 'EXECUTORS', 'UnitStopped', 'UnitJob', 'run_unit', 'slurm_job']

EXECUTORS = ('inline', 'local', 'slurm')
"""Where units run: here one after another, as submitit processes on this machine, or as Slurm jobs."""


class UnitStopped(RuntimeError):
    """A unit's command stopped by a SIGTERM or SIGINT passed on to it: not finished, resumable."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum

    def __reduce__(self):  # a submitit job sends it back pickled
        return UnitStopped, (str(self), self.signum)


def _environment(unit: Unit, threads: Optional[int]) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != 'MOGA_LAB_RUN_DIR'}  # (a fit's DDP workers' run folder)
    n = unit.threads or threads
    if n:
        env['OMP_NUM_THREADS'] = str(n)
    return env


@contextlib.contextmanager
def _on_stop_signals(handler: Callable[[int], None]):
    """Call ``handler(signum)`` on SIGTERM or SIGINT while inside (the previous handlers come back after). Yields
    whether it could: handlers can only be set in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = {s: signal.signal(s, lambda signum, frame: handler(signum)) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield True
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _call_forwarding_stops(argv: List[str], log, env: Dict[str, str]):
    """Run ``argv``; a SIGTERM or SIGINT to this process goes on to the command. Returns (exit status, the signal
    that stopped it or 0). A stopped unit is never finished, whatever its status: Lightning, for one, exits with
    status 0 on SIGTERM."""
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    stopped: List[int] = []

    def forward(signum: int) -> None:
        stopped.append(signum)
        proc.send_signal(signum)

    with _on_stop_signals(forward):
        code = proc.wait()
    return code, (stopped[0] if stopped else 0)


def run_unit(unit: Unit, threads: Optional[int]) -> int:
    """Run one unit's command here (resuming it where it left something to continue from), its output appended to
    its log; mark it finished when it exits with status 0.

    Args:
        unit: the unit.
        threads: ``OMP_NUM_THREADS`` (the unit's own ``threads`` wins).

    Returns:
        The command's exit status.

    Raises:
        UnitStopped: a SIGTERM or SIGINT stopped it (not finished; the next run resumes it).
    """
    os.makedirs(unit.dir, exist_ok=True)
    if recorded_command(unit) is None:
        atomic_write_text(os.path.join(unit.dir, COMMAND_FILE), portable_command(unit) + '\n')
    argv = unit.argv()
    start = time.perf_counter()
    with open(os.path.join(unit.dir, LOG_FILE), 'a') as log:
        log.write(f'\n$ {shlex.join(argv)}\n')
        log.flush()
        code, stopped = _call_forwarding_stops(argv, log, _environment(unit, threads))
    if stopped:
        with open(os.path.join(unit.dir, LOG_FILE), 'a') as log:
            log.write(f'stopped by signal {stopped} (exit status {code}): not finished; the next run resumes it\n')
        raise UnitStopped(f'{unit.name} stopped by signal {stopped}; not finished', stopped)
    if code == 0:
        write_record(unit, time.perf_counter() - start, resumed=argv != executable(unit.command))
    return code


class UnitJob:
    """A unit as a submitit job: runs the command, then marks the unit finished (picklable).

    Args:
        unit: the unit.
        threads: ``OMP_NUM_THREADS``.
    """

    def __init__(self, unit: Unit, threads: Optional[int]):
        self.unit, self.threads = unit, threads

    def __call__(self) -> int:
        code = run_unit(self.unit, self.threads)
        if code != 0:
            raise RuntimeError(f'{self.unit.name} exited with {code}; see {os.path.join(self.unit.dir, LOG_FILE)}')
        return code

    def checkpoint(self):
        """Preempted or timed out on Slurm: requeue; the unit resumes through its ``resume`` arguments."""
        import submitit
        return submitit.helpers.DelayedSubmission(UnitJob(self.unit, self.threads))


def slurm_job(folder: str, job_id: str):
    """The submitit handle of a Slurm job submitted by an earlier run (watched, not submitted again).

    Args:
        folder: submitit's folder of the study.
        job_id: the job's id.
    """
    import submitit
    return submitit.SlurmJob(folder=folder, job_id=job_id)


def _failure(u: Unit, error: Optional[BaseException] = None) -> str:
    """Where to look and the command's last words (its one-line error); submitit's own message ends in log paths."""
    path = os.path.join(u.dir, LOG_FILE)
    try:
        with open(path, 'rb') as f:
            f.seek(max(0, os.path.getsize(path) - 4096))
            lines = [ln.strip() for ln in f.read().decode('utf-8', 'replace').splitlines() if ln.strip()]
    except OSError:
        lines = []
    if lines and not lines[-1].startswith('$ '):
        return f'see {path}: {lines[-1][:300]}'
    # the command printed nothing: its exit code (in UnitJob's error, which submitit wraps in its own trace)
    code = re.search(r'exited with (-?\d+)', str(error or ''))
    return f'see {path}: ' + (f'exited with {code.group(1)} and printed nothing' if code else
                              str(error).strip().splitlines()[0][:300] if error is not None and str(error).strip() else
                              'no output')


class _Done:
    """A job that has already run (inline, or a dry run): its result, or the exception it raised."""

    def __init__(self, run: Callable[[], int]):
        self.code: Optional[int] = None
        self.error: Optional[Exception] = None
        try:
            self.code = run()
        except Exception as error:  # noqa: BLE001 - reported by the loop, like a submitit job's
            self.error = error

    def result(self) -> int:
        if self.error is not None:
            raise self.error
        assert self.code is not None
        return self.code


class _Inline:
    """Runs a unit here, when it is submitted: one at a time."""
    slots = 1

    def __init__(self, threads: Optional[int], dry_run: bool):
        self.threads, self.dry_run = threads, dry_run

    def submit(self, unit: Unit):
        return _Done(lambda: 0 if self.dry_run else self._run(unit))

    def _run(self, unit: Unit) -> int:
        code = run_unit(unit, self.threads)
        if code != 0:
            raise RuntimeError(f'exit {code}')
        return code

    def wait(self, jobs):
        return jobs[0]


class _Submitit:
    """Submits units as submitit jobs (local processes, ``concurrency`` at a time, or Slurm jobs) and waits for
    whichever finishes first."""

    def __init__(self, study: Study, executor: str, todo: Sequence[Unit], concurrency: int, threads: Optional[int],
                 slurm: Dict[str, Any]):
        import submitit
        self.folder = os.path.join(study.out, '.submitit')
        self.kind, self.threads = executor, threads
        self.ex: Any
        if executor == 'local':
            self.ex = submitit.LocalExecutor(folder=self.folder)
            self.ex.update_parameters(timeout_min=int(max(u.minutes for u in todo) * 3 + 10) if todo else 60)
            self.slots = concurrency
        else:
            self.ex = submitit.AutoExecutor(folder=self.folder, cluster='slurm')
            self.ex.update_parameters(**{'timeout_min': 240, **slurm})
            self.slots = 1 << 30

    def submit(self, unit: Unit):
        job = self.ex.submit(UnitJob(unit, self.threads))
        if self.kind == 'slurm':
            os.makedirs(unit.dir, exist_ok=True)
            atomic_write_text(os.path.join(unit.dir, SLURM_JOB_FILE), f'{job.job_id}\n')
        return job

    def wait(self, jobs):
        import submitit
        return next(submitit.helpers.as_completed(list(jobs), poll_frequency=2))

    def stop(self, running) -> None:
        # each unit stops resumable, not finished, instead of running on, unwatched, beside the next runner's copies
        # (Slurm jobs are the cluster's to stop). A local job's id is its controller's pid: SIGTERM makes the
        # controller pass the signal on to the unit and wait for it, where submitit's cancel() (SIGINT) kills the
        # unit one second later and prints the controller's traceback
        for _, job in running:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(job.job_id), signal.SIGTERM)


def run_study(study: Study, executor: str = 'inline', until: Optional[dt.datetime] = None,
              only: Optional[Sequence[str]] = None, concurrency: int = 1, threads: Optional[int] = None,
              slurm: Optional[Dict[str, Any]] = None, dry_run: bool = False,
              log: Callable[[str], None] = print, rerun_changed: bool = False) -> Dict[str, List[str]]:
    """Run the study's unfinished units in file order, each once the units it needs are finished.

    Args:
        study: from `moga_lab.studies.spec.load_study`.
        executor: ``inline`` (one after another, here), ``local`` (submitit processes on this machine,
            ``concurrency`` at a time) or ``slurm`` (submitit: one job per unit).
        until: start no unit whose estimate would end after this moment (None: no deadline).
        only: glob patterns of unit names (the units they need are not added; they must be finished).
        concurrency: ``local``: units at once.
        threads: ``OMP_NUM_THREADS`` for each unit (a unit's own ``threads`` wins).
        slurm: submitit's Slurm parameters (``executor='slurm'`` only), e.g. ``{'slurm_partition': 'gpu',
            'timeout_min': 240, 'gpus_per_node': 1}``.
        dry_run: say what would run, run nothing.
        log: where progress lines go.
        rerun_changed: units whose command changed since they ran (state ``changed``) have their folder removed
            and run again; without it the runner refuses to start while any chosen unit has changed.

    Returns:
        ``{'done': [...], 'failed': [...], 'skipped': [...]}``: units finished by this call, units whose command
        failed (see their ``unit.log``), and units not started (deadline, or waiting for a unit that did not finish);
        with ``inline`` or ``local``, a SIGTERM or SIGINT to the runner stops the running units (resumable, not
        finished), starts no further one and adds ``'stopped': [...]``.
    """
    if executor not in EXECUTORS:
        raise StudyError(f'--executor {executor!r} is not accepted; accepted: {", ".join(EXECUTORS)}')
    if executor == 'slurm' and shutil.which('sbatch') is None and not dry_run:
        raise StudyError('--executor slurm: no Slurm here (sbatch is not on PATH); run on a Slurm login node, or use '
                         '--executor local')
    chosen = select_units(study, only)
    changed = [u for u in chosen if unit_state(u) == 'changed']
    if changed and not rerun_changed:
        raise StudyError(f'units {", ".join(u.name for u in changed)} ran with another command than the study file '
                         'gives now (their outputs are of another recipe); --rerun-changed removes their folders and '
                         'runs them again')
    if not dry_run:
        refuse_queued(changed, '--rerun-changed')
    for u in changed if not dry_run else []:
        shutil.rmtree(u.dir)
        log(f'{u.name}: its command changed; its folder was removed and it runs again')
    done = {u.name for u in study.units if unit_state(u) == 'done'}
    todo = [u for u in chosen if u.name not in done]
    plan = paced_minutes(study)
    paced = sum(plan[u.name] for u in todo) != sum(u.minutes for u in todo)
    log(f'[study {study.name}] {len(chosen) - len(todo)} of {len(chosen)} units finished; {len(todo)} to run '
        f'(~{sum(plan[u.name] for u in todo):.0f} min estimated'
        f'{" at the pace of the units finished on this machine" if paced else ""})'
        f'{" by " + until.strftime("%H:%M") if until else ""}')
    runner = (_Inline(threads, dry_run) if executor == 'inline' or dry_run else
              _Submitit(study, executor, todo, concurrency, threads, slurm or {}))
    result: Dict[str, List[str]] = {'done': [], 'failed': [], 'skipped': []}
    stops: List[int] = []
    def handler(signum: int) -> None:  # forward a stop to the local workers
        stops.append(signum)
        cast(_Submitit, runner).stop(running)  # (installed for the local executor only)
    running: List[tuple] = []
    with _on_stop_signals(handler) if executor == 'local' and not dry_run else contextlib.nullcontext():
        _schedule(study, todo, done, runner, until, executor, dry_run, stops, running, result, log, plan)
    if stops and executor != 'inline':
        result.setdefault('stopped', [])
        log(f'stopped by signal {stops[0]}: {len(result["stopped"])} unit(s) not finished '
            f'({", ".join(result["stopped"]) or "none running"}); the next run resumes them')
    return result


def _schedule(study, todo, done, runner, until, executor, dry_run, stops, running, result, log, plan) -> None:
    """The one scheduling loop: start what may start (its inputs finished, its estimate within the deadline, a slot
    free), then wait for a running unit and record how it ended."""
    pending, count = list(todo), {u.name: k for k, u in enumerate(todo, 1)}

    def say(u: Unit, text: str) -> None:
        log(f'[{count[u.name]}/{len(todo)}] {u.name}: {text}')
    while pending or running:
        if stops:  # stopping: start nothing more, wait for the running units to stop
            result['skipped'].extend(u.name for u in pending)
            pending.clear()
        for u in list(pending):
            if len(running) >= runner.slots:
                break
            if any(a in [p.name for p in pending] + [r.name for r, _ in running] for a in u.after):
                continue                                            # its inputs are still to come
            queued = queued_slurm_job(u) if executor == 'slurm' and not dry_run else None
            if queued:  # a stopped runner's job: watch it (its result comes back through submitit's folder)
                pending.remove(u)
                running.append((u, slurm_job(runner.folder, queued)))
                log(f'{u.name}: already on Slurm as job {queued}; watched, not submitted again')
                continue
            missing = [a for a in u.after if a not in done]
            pending.remove(u)
            if missing:
                result['skipped'].append(u.name)
                say(u, f'waits for {", ".join(missing)}, not finished')
                continue
            if until is not None and dt.datetime.now() + dt.timedelta(minutes=plan[u.name]) > until:
                result['skipped'].append(u.name)
                say(u, f'not started, its ~{plan[u.name]:.0f} min would end after {until:%H:%M}')
                continue
            say(u, f'{"resumes" if unit_state(u) == "partial" else "starts"} (~{plan[u.name]:.0f} min): '
                   f'{shlex.join(u.command)}')
            running.append((u, runner.submit(u)))
        if not running:
            break
        job = runner.wait([j for _, j in running])
        u = next(r for r, j in running if j is job)
        running[:] = [(r, j) for r, j in running if j is not job]   # in place: the stop handler reads it
        try:
            job.result()
        except UnitStopped as stop:                                   # inline: the runner was told to stop
            stops.append(stop.signum)
            result.setdefault('stopped', []).append(u.name)
            say(u, f'stopped by signal {stop.signum}, not finished (the next run resumes it); no further unit starts')
            continue
        except Exception as error:  # noqa: BLE001 - one failed unit must not stop the others
            if stops and unit_state(u) != 'done':
                result.setdefault('stopped', []).append(u.name)
                say(u, 'stopped, not finished (the next run resumes it)')
                continue
            result['failed'].append(u.name)
            code = re.search(r'^exit (-?\d+)$', str(error))
            say(u, f'FAILED (exit {code.group(1)}); {_failure(u)}' if code else f'FAILED; {_failure(u, error)}')
            continue
        done.add(u.name)
        if dry_run:
            continue
        result['done'].append(u.name)
        plan.update(paced_minutes(study))
        say(u, f'finished in {read_record(u)["minutes"]:.1f} min')
