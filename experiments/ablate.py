"""Entry point kept for a checkout: ``python experiments/ablate.py --help`` runs `moga_lab.cli.ablate`
(installed as ``moga-ablate``)."""
import sys

from moga_lab.cli.ablate import main

if __name__ == '__main__':
    sys.exit(main())
