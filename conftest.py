"""Session-wide test settings, loaded before tests/ and notebooks/ are collected.

nbmake executes the notebooks in kernels that inherit this process's environment: MOGA_LAB_FAST=1 makes them run at
their small budgets (8 training steps, a 4x4 grid of players), so the suite checks that the code shown runs without
paying for the full-mode outputs committed in the notebooks (docs/notebooks.md). An explicit value is kept.
"""
import os

os.environ.setdefault('MOGA_LAB_FAST', '1')
