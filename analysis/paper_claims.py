"""Entry point kept for a checkout: ``python analysis/paper_claims.py --help`` runs `moga_lab.cli.claims`
(installed as ``moga-claims``)."""
import sys

from moga_lab.cli.claims import main

if __name__ == '__main__':
    sys.exit(main())
