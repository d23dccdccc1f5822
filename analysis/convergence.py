"""Entry point kept for a checkout: ``python analysis/convergence.py --help`` runs `moga_lab.cli.convergence`."""
import sys

from moga_lab.cli.convergence import main

if __name__ == '__main__':
    sys.exit(main())
