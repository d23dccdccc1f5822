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

Then the limits (``--no-limits`` skips them): why a column can or cannot reach 1.0x on this CPU.

* Compute bound. Every model must do its multiply-accumulates (fvcore's count at 224 px, the papers' "FLOPs"). No
  implementation on this CPU does them faster than its matrix-multiply peak, measured in the same run (2048 x 2048
  ``torch.mm``, float32 and bfloat16: AMX where the CPU has it). So MACs / peak is a floor on the time per image and
  peak / MACs a ceiling on images/s, for any kernel, fusion or batch size; depth-wise convolutions and activations
  only make the real time longer. The table gives each MogaNet's ceiling against its peer's *measured* rate: below
  1.0x, that column cannot reach 1.0x without computing fewer MACs. The same bound as efficiencies: each model's
  achieved MACs/s as a % of the peak, and the % MogaNet would need to match its peer's images/s (above the peer's own
  %, MogaNet would have to use the machine better than the peer does; at 100 %, not at all).
* Per-operator cost (what batch 1 pays): the ATen operators one forward pass dispatches (counted with a
  ``TorchDispatchMode``) times the time of the cheapest operator (a 1-element add, median), a floor on the
  time eager PyTorch spends outside the arithmetic.
"""
import argparse
import os
import sys

import pandas as pd
import timm
import torch

import moga_lab  # noqa: F401
from moga_lab.cli import int_at_least
from moga_lab.runtime import describe_machine, keep_freed_memory

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import throughput  # noqa: E402  (its timing loop, shared by the benchmarks)

PAIRS = {
    'xt': ('moganet_xtiny', 76.5, [('convnext_atto', 75.7)]),
    't': ('moganet_tiny', 79.0, [('convnext_pico', 79.5)]),
    's': ('moganet_small', 83.4, [('convnext_small', 83.1), ('swin_small_patch4_window7_224', 83.2)]),
}


def count_operators(model: torch.nn.Module, x: torch.Tensor) -> int:
    """ATen operators one forward pass of ``model`` dispatches (top level: an operator's own internals not counted)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))
    with torch.inference_mode(), Count():
        model(x)
    return Count.n


def cheapest_operator_us(repeats: int = 2000) -> float:
    """Median microseconds of a 1-element add: the fixed cost of dispatching one operator."""
    import statistics
    import time
    a, b = torch.ones(1), torch.ones(1)
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            torch.add(a, b)
            times.append(time.perf_counter() - start)
    return 1e6 * statistics.median(times)


def macs(name: str) -> float:
    """Multiply-accumulates per 224 px image (fvcore, on the unfused model: the folds remove no MACs it counts)."""
    return float(throughput.macs(timm.create_model(name), 224))


def matmul_peaks(peaks=None):
    """{bf16: GMAC/s}: the float32 and bfloat16 matmul peaks measured now, or the best of these and ``peaks``."""
    now = {False: throughput.matmul_peak(torch.float32) / 2, True: throughput.matmul_peak(torch.bfloat16) / 2}
    return {k: max(v, (peaks or {}).get(k, 0.0)) for k, v in now.items()}


def limits(pairs, best, columns, peaks):
    """The compute-bound and per-operator tables (module docstring) from the rates and peaks measured in this run."""
    op_us = cheapest_operator_us()
    print(f'\nmatrix-multiply peak (best of the rounds, measured between the models): {peaks[False]:.0f} GMAC/s '
          f'float32, {peaks[True]:.0f} GMAC/s bfloat16; cheapest operator {op_us:.1f} us')
    per_model, rows = {}, []
    for key in pairs:
        moga, _, peers = PAIRS[key]
        for name in [moga] + [p for p, _ in peers]:
            if name in per_model:
                continue
            x = torch.randn(1, 3, 224, 224).contiguous(memory_format=torch.channels_last)
            ops = count_operators(build(name), x)
            per_model[name] = dict(macs=macs(name), ops=ops)
            m = per_model[name]
            rows.append({'model': name, 'GMACs / image': round(m['macs'] / 1e9, 3),
                         'ceiling fp32 (images/s)': round(peaks[False] * 1e9 / m['macs']),
                         'ceiling bf16 (images/s)': round(peaks[True] * 1e9 / m['macs']),
                         'operators / forward': ops, 'operator floor (ms)': round(ops * op_us / 1e3, 2)})
    print(pd.DataFrame(rows).to_markdown(index=False))
    table = []
    for key in pairs:
        moga, _, peers = PAIRS[key]
        ceiling = {bf16: peaks[bf16] * 1e9 / per_model[moga]['macs'] for bf16 in (False, True)}
        for peer, _ in peers:
            row = {'pair': f'{moga} vs {peer}'}
            for c in columns:
                row[f'batch {c[0]} {"bf16" if c[1] else "fp32"}'] = (
                    f'{best[(moga, c)] / best[(peer, c)]:.2f}x now, <= {ceiling[c[1]] / best[(peer, c)]:.2f}x')
            table.append(row)
            # the same bound as efficiencies: achieved MAC rate as a % of the matmul peak, MogaNet now / the peer now /
            # what MogaNet needs to match the peer's images/s
            row = {'pair': f'% of peak: {moga} now / {peer} now / {moga} needed for 1.0x'}
            for c in columns:
                pct = {n: 100 * best[(n, c)] * per_model[n]['macs'] / 1e9 / peaks[c[1]] for n in (moga, peer)}
                need = 100 * best[(peer, c)] * per_model[moga]['macs'] / 1e9 / peaks[c[1]]
                row[f'batch {c[0]} {"bf16" if c[1] else "fp32"}'] = f'{pct[moga]:.0f} / {pct[peer]:.0f} / {need:.0f} %'
            table.append(row)
    print('\nMogaNet / peer: measured now, and the most the compute bound allows (MogaNet at the matmul peak against '
          'the peer as measured); then the same as efficiencies (multiply-accumulates per second as a % of the matmul '
          'peak):')
    print(pd.DataFrame(table).to_markdown(index=False))


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
    p.add_argument('--batch-sizes', nargs='+', type=int_at_least(1), default=[16, 1])
    p.add_argument('--rounds', type=int_at_least(1), default=2)
    p.add_argument('--repeats', type=int_at_least(1), default=5)
    p.add_argument('--threads', type=int_at_least(1), help='intra-op threads (default: torch\'s)')
    p.add_argument('--no-limits', action='store_true', help='skip the compute-bound and per-operator tables')
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()
    columns = [(b, bf16) for b in args.batch_sizes for bf16 in (False, True)]
    print(f'{describe_machine()}, {torch.get_num_threads()} threads, timm {timm.__version__}; '
          f'224 px, channels_last, best of {args.rounds} rounds of the median of {args.repeats} batches', flush=True)
    rows, rates, peaks = [], {}, None
    for key in args.pairs:
        moga, moga_top1, peers = PAIRS[key]
        names = [(moga, moga_top1)] + peers
        models = {n: build(n) for n, _ in names}
        best = {(n, c): 0.0 for n, _ in names for c in columns}
        for _ in range(args.rounds):
            if not args.no_limits:  # the peak in every round, as the rates: the machine's slow moments hit both
                peaks = matmul_peaks(peaks)
            for c in columns:
                for n, _ in names:  # interleaved: each round measures the pair back to back
                    best[(n, c)] = max(best[(n, c)], rate(models[n], c[0], c[1], args.repeats))
        rates.update(best)
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
    if not args.no_limits:
        limits(args.pairs, rates, columns, peaks)


if __name__ == '__main__':
    main()
