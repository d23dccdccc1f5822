"""moga_lab.runtime: allocator settings change speed, never results; the running clock skips stops."""
import os
import platform
import signal
import subprocess
import sys
import time

import pytest
import timm
import torch

import moga_lab  # noqa: F401
from moga_lab.runtime import keep_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason='mallopt settings exist only in glibc')
def test_allocator_settings_apply_and_keep_outputs_bitwise():
    model = timm.create_model('moganet_xtiny', num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(x)
        assert keep_freed_memory() is True
        after = model(x)
    assert torch.equal(before, after)  # same kernels on the same data: bitwise, not within a tolerance


def test_other_c_libraries_are_left_alone(monkeypatch):
    import moga_lab.runtime as runtime
    monkeypatch.setattr(runtime.sys, 'platform', 'darwin')
    assert keep_freed_memory() is False


def test_describe_machine_names_cpu_cores_and_torch():
    import os
    from moga_lab.runtime import describe_machine
    text = describe_machine()
    assert f'{len(os.sched_getaffinity(0))} cores' in text and f'torch {torch.__version__.split("+")[0]}' in text
    if os.path.isfile('/proc/cpuinfo'):
        info = open('/proc/cpuinfo').read()
        model = next(line.split(':', 1)[1].strip() for line in info.splitlines() if line.startswith('model name'))
        flags = next(line.split(':', 1)[1].split() for line in info.splitlines() if line.startswith('flags'))
        assert text.startswith(model) and ('(AMX)' in text) == ('amx_tile' in flags)
        assert ('(AVX-512)' in text) == ('avx512f' in flags and 'amx_tile' not in flags)
        assert ('(AVX2)' in text) == ('avx2' in flags and 'avx512f' not in flags)


def test_test_workers_share_the_cores():
    """Under pytest-xdist (setup.cfg) each worker, and what it starts, uses its share of the cores, not all of them."""
    workers = os.environ.get('PYTEST_XDIST_WORKER_COUNT')
    if not workers:
        pytest.skip('the suite runs in one process (-n 0)')
    share = max(1, (os.cpu_count() or 1) // int(workers))
    assert torch.get_num_threads() == share and os.environ['OMP_NUM_THREADS'] == str(share)


def test_running_time_stands_still_while_the_process_is_stopped():
    # a child process, stopped for 6 s (as studies/pause.sh stops a study) then continued, reports the stop
    code = ('import sys, time\nfrom moga_lab.runtime import running_time, stopped_seconds\n'
            't0, w0 = running_time(), time.perf_counter()\nprint("ready", flush=True)\nsys.stdin.readline()\n'
            'print(stopped_seconds(), running_time() - t0, time.perf_counter() - w0, flush=True)\n')
    child = subprocess.Popen([sys.executable, '-c', code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == 'ready'
        time.sleep(1.0)
        os.kill(child.pid, signal.SIGSTOP)
        time.sleep(6.0)
        os.kill(child.pid, signal.SIGCONT)
        time.sleep(1.0)
        out, _ = child.communicate('go\n', timeout=60)
    finally:
        child.kill()
    stopped, running, wall = map(float, out.split())
    assert 5.0 < stopped < 6.6, out          # the 6 s stop, within the watcher's 0.25 s tick
    assert wall > 7.9 and abs(running - (wall - stopped)) < 0.01
    assert running < 3.0                      # ~2 s of the 8 s were not stopped


def test_training_timer_excludes_stopped_time_and_continues_on_resume(monkeypatch):
    # the Timer behind results.yaml's wall_seconds, on a fake running clock
    from lightning.pytorch.trainer.states import RunningStage

    from moga_lab.training import run
    clock = [100.0]
    monkeypatch.setattr(run, 'running_time', lambda: clock[0])
    timer = run._RunningTimer(verbose=False)
    timer.on_train_start(None, None)
    clock[0] += 30.0
    assert timer.time_elapsed() == 30.0
    timer.on_train_end(None, None)
    clock[0] += 50.0                          # after the end: not counted
    state = timer.state_dict()
    assert state['time_elapsed'][RunningStage.TRAINING.value] == 30.0
    resumed = run._RunningTimer(verbose=False)
    resumed.load_state_dict(state)
    resumed.on_train_start(None, None)
    clock[0] += 12.0
    resumed.on_train_end(None, None)
    assert resumed.time_elapsed() == 42.0     # both segments
    resumed.on_test_start(None, None)
    clock[0] += 3.0
    resumed.on_test_end(None, None)
    assert resumed.time_elapsed('test') == 3.0
