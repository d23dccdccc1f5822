"""Entry point kept for a checkout: ``python analysis/naive_vs_debiased.py --help`` runs `moga_lab.cli.naive_vs_debiased`."""
import sys

from moga_lab.cli.naive_vs_debiased import main

if __name__ == '__main__':
    sys.exit(main())
