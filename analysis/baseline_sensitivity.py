"""Entry point kept for a checkout: ``python analysis/baseline_sensitivity.py --help`` runs `moga_lab.cli.baseline_sensitivity`."""
import sys

from moga_lab.cli.baseline_sensitivity import main

if __name__ == '__main__':
    sys.exit(main())
