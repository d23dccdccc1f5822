"""``python -m moga_lab.cli.export SOURCE --to model.safetensors``: weights as safetensors, the format to share them in.

A ``.safetensors`` file holds tensors and a string table, nothing that runs on load, so whoever receives it can
load it without trusting its sender. ``SOURCE`` is

* a checkpoint written by ``moga_lab.cli.fit`` (``runs/x/best.ckpt``): the network's weights, with the run's
  hyper-parameters (model switches, image size, normalisation, class names) as JSON in the file's metadata, so
  ``--checkpoint model.safetensors`` works wherever ``--checkpoint best.ckpt`` does;
* any weights file `moga_lab.models.read_weights` reads (the authors' ``.pth.tar``, timm's, Lightning's): the flat
  state dict (EMA weights when the file holds them, as timm loads them; ``--no-ema`` for the raw ones), for
  ``--model NAME --weights model.safetensors``. ``--model NAME`` checks first that they load into that model.
"""
import json
import os
import sys
from typing import Dict, List, Optional

from moga_lab.cli.common import Parser, add_trust_argument, fail, user_errors

__all__ = ['export_safetensors', 'main']


def export_safetensors(source: str, out: str, model_name: Optional[str] = None, use_ema: bool = True,
                       trust: bool = False) -> Dict[str, object]:
    """Write the weights of ``source`` to ``out`` as safetensors (atomically).

    Args:
        source: a fit checkpoint or a weights file.
        out: the ``.safetensors`` file to write.
        model_name: a timm model name the weights must load into (checked before writing); fit checkpoints carry
            their own model.
        use_ema: for weights files, take the EMA entry when there is one.
        trust: allow full unpickling of ``source`` (see `moga_lab.models.checkpoint.torch_load`).

    Returns:
        ``dict(tensors=..., kind='fit checkpoint' | 'weights', entry=...)``.

    Raises:
        ValueError: ``out`` does not end in ``.safetensors``.
        moga_lab.models.UntrustedCheckpointError: ``source`` needs full unpickling and ``trust`` is False.
    """
    from safetensors.torch import save_file

    from moga_lab.loaders import FIT_METADATA_KEY, fit_contents, load_pretrained
    from moga_lab.models import read_weights, torch_load
    if not out.endswith('.safetensors'):
        raise ValueError(f'--to {out!r} must end in .safetensors')
    if not os.path.isfile(source):
        raise FileNotFoundError(f'{source!r} does not exist (pass a local checkpoint or weights file)')
    raw = torch_load(source, trust=trust)
    fit = fit_contents(raw)
    metadata = {'format': 'pt'}
    if fit is not None:
        hp, state = fit
        keep = ('config', 'num_classes', 'in_chans', 'image_size', 'mean', 'std', 'class_names')
        metadata[FIT_METADATA_KEY] = json.dumps({k: hp[k] for k in keep if k in hp})
        kind, entry = 'fit checkpoint', 'state_dict'
    else:
        state, entry = read_weights(raw, use_ema=use_ema)
        kind = 'weights'
        if model_name:
            load_pretrained(model_name, source, use_ema=use_ema, trust=trust)  # raises when they do not fit
    # safetensors refuses tensors that share memory: each tensor is written as its own contiguous copy
    state = {k: v.detach().to('cpu').contiguous().clone() for k, v in state.items()}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = f'{out}.tmp'
    save_file(state, tmp, metadata=metadata)
    os.replace(tmp, out)
    return dict(tensors=len(state), kind=kind, entry=entry, parameters=int(sum(v.numel() for v in state.values())))


def build_parser() -> Parser:
    """The command's options."""
    p = Parser(prog='python -m moga_lab.cli.export', description=__doc__,
               formatter_class=lambda prog: __import__('argparse').RawDescriptionHelpFormatter(prog, width=110))
    p.add_argument('source', help='a moga_lab.cli.fit checkpoint or a weights file (.pth, .pth.tar, .ckpt)')
    p.add_argument('--to', required=True, metavar='FILE.safetensors', help='the file to write')
    p.add_argument('--model', help='a timm model name the weights must load into (checked before writing)')
    p.add_argument('--no-ema', action='store_true', help='weights files: the raw state_dict, not the EMA entry')
    add_trust_argument(p)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point: parse ``argv``, export, exit 2 with one line on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        done = export_safetensors(args.source, args.to, args.model, not args.no_ema, args.trust_weights)
    except user_errors() as error:
        fail(parser.prog, str(error))
    print(f'wrote {args.to}: {done["tensors"]} tensors, {done["parameters"]:,} parameters ({done["kind"]}, '
          f'{done["entry"] or "weights"})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
