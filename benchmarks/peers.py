"""MogaNet against the timm ConvNeXt / Swin of equal ImageNet-1K top-1, on this CPU, in one run.

    python benchmarks/peers.py [--pairs xt t s] [--batch-sizes 16 1] [--rounds 2] [--repeats 5] [--threads N]

The question a user asks: at the accuracy I need, which network runs faster here? Pairs (top-1 at 224 px: MogaNet
from the paper, ConvNeXt from timm's results table, Swin from its paper):

* MogaNet-XT (76.5) vs ConvNeXt-atto (75.7)
* MogaNet-T (79.0) vs ConvNeXt-pico (79.5)
* MogaNet-S (83.4) vs ConvNeXt-S (83.1) and Swin-S (83.2)

Each model in eval mode at 224 px, channels_last, inference mode; MogaNet through ``for_inference()`` (the fast path
the interaction game uses); fp32 and bf16 autocast; freed memory kept in the heap (``keep_freed_memory``, as the
CLIs do). A rate is images/s, the median of ``--repeats`` timed batches after two warm-up batches; each model is
measured ``--rounds`` times, interleaved with its peers, and the best round is kept (so a slow moment of the machine
does not decide a ratio). Prints one Markdown table: the rates and MogaNet / peer ratios per column.
"""
import argparse
import os
import sys

import pandas as pd
import timm
import torch

import moga_lab  # noqa: F401
from moga_lab.runtime import describe_machine, keep_freed_memory

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import throughput  # noqa: E402  (its timing loop, shared by the benchmarks)

PAIRS = {
    'xt': ('moganet_xtiny', 76.5, [('convnext_atto', 75.7)]),
    't': ('moganet_tiny', 79.0, [('convnext_pico', 79.5)]),
    's': ('moganet_small', 83.4, [('convnext_small', 83.1), ('swin_small_patch4_window7_224', 83.2)]),
}


def build(name: str) -> torch.nn.Module:
    model = timm.create_model(name).eval()
    if hasattr(model, 'for_inference'):
        model = model.for_inference()
    return model.to(memory_format=torch.channels_last)


def rate(model, batch: int, bf16: bool, repeats: int) -> float:
    """images/s: throughput.py's timing (two warm-ups, median of ``repeats``), in inference mode and autocast."""
    x = torch.randn(batch, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
        return throughput.rate(model, x, repeats)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--pairs', nargs='+', choices=sorted(PAIRS), default=['xt', 't', 's'])
    p.add_argument('--batch-sizes', nargs='+', type=int, default=[16, 1])
    p.add_argument('--rounds', type=int, default=2)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--threads', type=int, help='intra-op threads (default: torch\'s)')
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()
    columns = [(b, bf16) for b in args.batch_sizes for bf16 in (False, True)]
    print(f'{describe_machine()}, {torch.get_num_threads()} threads, timm {timm.__version__}; '
          f'224 px, channels_last, best of {args.rounds} rounds of the median of {args.repeats} batches', flush=True)
    rows = []
    for key in args.pairs:
        moga, moga_top1, peers = PAIRS[key]
        names = [(moga, moga_top1)] + peers
        models = {n: build(n) for n, _ in names}
        best = {(n, c): 0.0 for n, _ in names for c in columns}
        for _ in range(args.rounds):
            for c in columns:
                for n, _ in names:  # interleaved: each round measures the pair back to back
                    best[(n, c)] = max(best[(n, c)], rate(models[n], c[0], c[1], args.repeats))
        for peer, peer_top1 in peers:
            row = {'pair (top-1)': f'{moga} ({moga_top1}) vs {peer} ({peer_top1})'}
            for c in columns:
                a, b = best[(moga, c)], best[(peer, c)]
                row[f'batch {c[0]} {"bf16" if c[1] else "fp32"}'] = f'{a:.0f} vs {b:.0f} = {a / b:.2f}x'
            rows.append(row)
            print(row, flush=True)
        del models
    print()
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == '__main__':
    main()
