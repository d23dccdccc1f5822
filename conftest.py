"""Test settings for the whole run, loaded before tests/ and notebooks/ are collected.

nbmake executes the notebooks in kernels that inherit this process's environment: MOGA_LAB_FAST=1 makes them run at
their small budgets (8 training steps, a 4x4 grid of players), so the suite checks that the code shown runs without
paying for the full-mode outputs committed in the notebooks (docs/notebooks.md). An explicit value is kept.

The suite runs in pytest-xdist workers (setup.cfg: ``-n auto``): each worker, and every process a test starts
(scripts, DDP ranks, notebook kernels), gets its share of the cores. Two torch processes that each use every core
slow each other ~10x on 2 cores. ``-n 0`` runs the suite in one process with every core.
"""
import os

os.environ.setdefault('MOGA_LAB_FAST', '1')

if os.environ.get('PYTEST_XDIST_WORKER_COUNT'):
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ['PYTEST_XDIST_WORKER_COUNT']))
    os.environ['OMP_NUM_THREADS'] = os.environ['MKL_NUM_THREADS'] = str(_threads)
    import torch
    torch.set_num_threads(_threads)
