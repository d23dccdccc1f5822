"""Process-level CPU settings that change speed, never results.

PyTorch's CPU allocator hands every tensor buffer to the C library's ``malloc``. glibc serves blocks above its
mmap threshold (dynamic, at most 32 MB) with a fresh ``mmap`` and gives them back with ``munmap`` on free, so
every forward pass over wide activations (MogaNet's 4x-expanded CA branch at 224 px is ~50 MB per tensor at
batch 16) page-faults and zeroes its memory again. Keeping freed blocks in the heap removes that: MogaNet-T
inference at 224 px runs 1.6-2x faster on the 2-core machine (benchmarks/throughput.py measures it in every run).
jemalloc/tcmalloc via LD_PRELOAD do the same, but need a library and an environment variable before start-up;
``mallopt`` works from inside the process, which is why this is done by hand. The cost: the heap keeps the peak
working set resident instead of returning it between steps.
"""
import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # <malloc.h>


def _libc():
    if not sys.platform.startswith('linux'):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        libc.gnu_get_libc_version  # glibc only: musl has no mallopt tunables
        return libc
    except (OSError, AttributeError):
        return None


def keep_freed_memory(mmap_threshold: int = 1 << 30, trim_threshold: int = 1 << 34, top_pad: int = 256 << 20) -> bool:
    """Let glibc keep freed tensor buffers for reuse (see the module docstring). Returns False where the C library
    is not glibc (macOS, Windows, musl): nothing is changed there."""
    libc = _libc()
    if libc is None:
        return False
    return all(libc.mallopt(opt, value) == 1 for opt, value in ((_M_MMAP_THRESHOLD, mmap_threshold),
                                                              (_M_TRIM_THRESHOLD, trim_threshold),
                                                              (_M_TOP_PAD, top_pad)))


def describe_machine() -> str:
    """What a measurement ran on, for reports: 'Intel(R) Xeon(R) Processor (AMX), 2 cores, torch 2.14.1'.

    The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere), its vector class (AMX tiles: bf16
    matrix units that decide the bf16 columns of every benchmark; else AVX-512, or AVX2 only: one AMD EPYC model name
    covers both, ~2x apart in speed), the cores this process may use and the torch version.
    """
    import platform

    import torch
    name, tag = platform.processor() or 'unknown CPU', ''
    try:
        with open('/proc/cpuinfo') as f:
            info = f.read()
        name = next((line.split(':', 1)[1].strip() for line in info.splitlines() if line.startswith('model name')),
                    name)
        flags = set(next((line.split(':', 1)[1].split() for line in info.splitlines() if line.startswith('flags')), []))
        tag = (' (AMX)' if 'amx_tile' in flags else ' (AVX-512)' if 'avx512f' in flags else
               ' (AVX2)' if 'avx2' in flags else '')
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    return f'{name}{tag}, {cores} cores, torch {torch.__version__.split("+")[0]}'
