"""moga_lab.utils.runtime: allocator settings change speed, never results."""
import os
import platform

import pytest
import timm
import torch

import moga_lab  # noqa: F401
from moga_lab.utils.runtime import keep_freed_memory


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
    import moga_lab.utils.runtime as runtime
    monkeypatch.setattr(runtime.sys, 'platform', 'darwin')
    assert keep_freed_memory() is False


def test_describe_machine_names_cpu_cores_and_torch():
    import os
    from moga_lab.utils.runtime import describe_machine
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
