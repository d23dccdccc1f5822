"""Shared command-line plumbing: one-line errors with exit status 2, value parsers."""
import argparse
import sys
from typing import Callable, Sequence, Tuple

__all__ = ['Parser', 'int_triple', 'choice', 'positive_float', 'unit_fraction', 'fail', 'user_errors']


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument prints one line (no usage block) and exits with status 2."""

    def error(self, message: str):
        self.exit(2, f'{self.prog}: error: {message}\n')


def fail(prog: str, message: str, status: int = 2):
    sys.stderr.write(f'{prog}: error: {message}\n')
    raise SystemExit(status)


def int_triple(text: str) -> Tuple[int, int, int]:
    """'1,2,3' or '1:3:4' -> (1, 2, 3)."""
    parts = text.replace(':', ',').split(',')
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not three integers (accepted: e.g. 1,2,3 or 1:3:4)')
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f'{text!r} is not three integers (accepted: e.g. 1,2,3 or 1:3:4)')
    return values


def positive_float(text: str) -> float:
    """A number > 0 (a fraction of an epoch <= 1, or a number of batches > 1)."""
    try:
        value = float(text)
    except ValueError:
        value = float('nan')
    if not value > 0:
        raise argparse.ArgumentTypeError(f'{text!r} is not accepted; accepted: a number > 0 (<= 1: a fraction, > 1: batches)')
    return value


def unit_fraction(text: str) -> float:
    """A rate in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = float('nan')
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f'{text!r} is not accepted; accepted: a number in [0, 1)')
    return value


def choice(accepted: Sequence[str], normalise: Callable[[str], str] = str.lower):
    """A type= that names the accepted values in its error."""
    def parse(text: str) -> str:
        value = normalise(text)
        if value not in accepted:
            raise argparse.ArgumentTypeError(f'{text!r} is not accepted; accepted: {", ".join(accepted)}')
        return value
    return parse


def user_errors() -> tuple:
    """Exceptions that mean bad input (reported in one line, exit 2), not a bug (full traceback)."""
    from .data import DataError
    from .models import CheckpointMismatchError
    return (ValueError, FileNotFoundError, DataError, CheckpointMismatchError)
