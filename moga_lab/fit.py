"""``python -m moga_lab.fit --variant small``: the package's front door (the command lives in `moga_lab.cli.fit`)."""
from moga_lab.cli.fit import main

if __name__ == '__main__':
    main()
