"""Shared command-line plumbing: one-line errors with exit status 2, value parsers."""
import argparse
import sys
from typing import Callable, List, Sequence, Tuple

from moga_lab.models.factory import MIN_IMAGE_SIZE  # (the models' limit, stated where the options are parsed)

__all__ = ['MIN_IMAGE_SIZE', 'Parser', 'int_triple', 'choice', 'positive_float', 'unit_fraction', 'open_fraction',
           'int_at_least', 'fail', 'user_errors']


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument prints one line (no usage block) and exits with status 2."""

    def error(self, message: str):
        """One line and exit 2 (argparse prints its usage block otherwise)."""
        self.exit(2, f'{self.prog}: error: {message}\n')


def fail(prog: str, message: str, status: int = 2):
    """Print ``prog: error: message`` on stderr and exit with ``status``."""
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


def _number(text: str, kind, ok: Callable[[float], bool], accepted: str):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f'{text!r} is not accepted; accepted: {accepted}')
    return value


def positive_float(text: str) -> float:
    """A number > 0 (a fraction of an epoch <= 1, or a number of batches > 1)."""
    return _number(text, float, lambda v: v > 0, 'a number > 0 (<= 1: a fraction, > 1: batches)')


def unit_fraction(text: str) -> float:
    """A rate in [0, 1)."""
    return _number(text, float, lambda v: 0 <= v < 1, 'a number in [0, 1)')


def open_fraction(text: str) -> float:
    """A number in (0, 1), e.g. a threshold as a fraction of full scale."""
    return _number(text, float, lambda v: 0 < v < 1, 'a number in (0, 1), e.g. 0.1')


def int_at_least(minimum: int):
    """A type= for an integer >= ``minimum`` (e.g. an image size)."""
    def parse(text: str) -> int:
        return _number(text, int, lambda v: v >= minimum, f'an integer >= {minimum}')
    return parse


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
    from moga_lab.data import DataError
    from moga_lab.models import CheckpointMismatchError
    return (ValueError, FileNotFoundError, DataError, CheckpointMismatchError)  # UntrustedCheckpointError included


class _InOrder(argparse.Action):
    """Records --checkpoint / --model / --weights in command-line order (models keep the order they were named in)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, 'sources', list(getattr(namespace, 'sources', None) or []) + [(self.dest, values)])


def add_model_arguments(p: argparse.ArgumentParser, images: bool = True) -> None:
    """The model options every analysis command shares: fit checkpoints and/or ``--model NAME --weights FILE``,
    labels, EMA choice; with ``images`` the ImageFolder selection (one image per class, eval transform)."""
    from moga_lab.loaders import EVAL_TRANSFORMS
    p.set_defaults(sources=[])
    p.add_argument('--checkpoint', action=_InOrder, metavar='FILE',
                   help='a checkpoint written by moga_lab.cli.fit; repeat for several models')
    p.add_argument('--model', action=_InOrder, metavar='NAME',
                   help='a timm model name (moganet_tiny, convnext_tiny, swin_tiny_patch4_window7_224, ...) whose '
                        'weights --weights names; repeat --model/--weights for several models')
    p.add_argument('--weights', action=_InOrder, metavar='FILE',
                   help="the k-th --model's local weights file: the authors' *.pth.tar or timm-format weights")
    p.add_argument('--label', action='append', help='a name per model for tables and legends, in the order named')
    p.add_argument('--no-ema', action='store_true',
                   help='--weights holding EMA weights: load the raw state_dict instead (default: EMA, as timm does)')
    add_trust_argument(p)
    if images:
        p.add_argument('--one-per-class', action='store_true',
                       help='draw each image from another class (the authors\' list: one ImageNet image per class)')
        p.add_argument('--eval-transform', type=choice(EVAL_TRANSFORMS), default='auto',
                       help='--model/--weights on an ImageFolder: model = the (first) model\'s pretrained config, paper '
                            '= resize 256 (bilinear) -> centre crop 224, ImageNet mean/std for every model (the '
                            "authors'); auto (default) = model for one model, paper for several")


def add_trust_argument(p: argparse.ArgumentParser) -> None:
    """``--trust-weights``: the one way to unpickle a weights file fully (see `moga_lab.models.checkpoint.torch_load`)."""
    p.add_argument('--trust-weights', action='store_true',
                   help='unpickle --weights / --checkpoint files fully, which can run code stored in them; only for '
                        'files whose source you trust (default: weights_only loading, tensors and a few plain types)')


def model_sources(args) -> list:
    """``[('checkpoint', path) | ('model', name, weights), ...]`` from `add_model_arguments`'s options; the k-th
    --model takes the k-th --weights."""
    sources = getattr(args, 'sources', None) or []
    names = [v for k, v in sources if k == 'model']
    weights = [v for k, v in sources if k == 'weights']
    if len(names) != len(weights):
        raise ValueError(f'{len(names)} --model for {len(weights)} --weights: give each --model NAME its --weights FILE '
                         f'(a local file; nothing is downloaded)')
    out: List[tuple] = []
    k = 0
    for kind, value in sources:
        if kind == 'checkpoint':
            out.append(('checkpoint', value))
        elif kind == 'model':
            out.append(('model', value, weights[k]))
            k += 1
    if not out:
        raise ValueError('no model given: pass --checkpoint FILE (a fit checkpoint) or --model NAME --weights FILE')
    return out
