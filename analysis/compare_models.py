"""Entry point kept for a checkout: ``python analysis/compare_models.py --help`` runs `moga_lab.cli.compare`
(installed as ``moga-compare``)."""
import sys

from moga_lab.cli.compare import main

if __name__ == '__main__':
    sys.exit(main())
