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

* Compute bound. Every model must do its multiply-accumulates (torch's FlopCounterMode at 224 px, the papers' "FLOPs"). No
  implementation on this CPU does them faster than its matrix-multiply peak, measured in the same run (2048 x 2048
  ``torch.mm``, float32 and bfloat16: AMX where the CPU has it). So MACs / peak is a floor on the time per image and
  peak / MACs a ceiling on images/s, for any kernel, fusion or batch size; depth-wise convolutions and activations
  only make the real time longer. The table gives each MogaNet's ceiling against its peer's *measured* rate: below
  1.0x, that column cannot reach 1.0x without computing fewer MACs. The same bound as efficiencies: each model's
  achieved MACs/s as a % of the peak, and the % MogaNet would need to match its peer's images/s (above the peer's own
  %, MogaNet would have to use the machine better than the peer does; at 100 %, not at all).
* Memory bound, operator by operator (a roofline). Each ATen operator a forward pass dispatches (recorded with a
  ``TorchDispatchMode``, per batch size and dtype) reads its operands and writes its result: the bytes of its
  distinct input and output tensors (views and operators that hand back their input move nothing), and its MACs
  (convolutions and matrix products, from the shapes). It cannot take less than its MACs at the matmul peak nor less
  than its bytes at the memory bandwidth measured in the same run for a working set of that size (``a + b -> c`` on
  float32 tensors of 1-512 MB: the cache a working set fits in sets its speed). The sum over operators of the larger
  of the two is the least time this operator graph can take when run operator by operator, as eager PyTorch, oneDNN
  and inductor (which fuses only element-wise work into its neighbours) run it; only fusion across operators (tiles
  kept in cache from one operator to the next) gets below it. The tables give each model's floor, how much of it the
  measured rate achieves, and MogaNet's ceiling against its peer's measured rate.
* Per-operator cost (what batch 1 pays): the ATen operators one forward pass dispatches times the time of the
  cheapest operator (a 1-element add, median), a floor on the time eager PyTorch spends outside the arithmetic.

``--breakdown`` adds where the time goes: every operator of one forward pass timed inside the model (first batch
size, fp32 and bf16), grouped by operator and convolution kind, the largest six per model, each against the sum of
its calls' roofline times: which kinds of operator run far from their limit. Then the kernel floor: every
operator of one forward pass (every batch size and dtype) also repeated alone right after the model calls it (same
inputs, warm caches, best of 3) and the best times summed: the most images/s the kernels PyTorch has (oneDNN, ATen)
give this operator graph on this CPU, whatever the scheduling around them; MogaNet at its kernel floor against its
peer as measured says whether a column can reach 1.0x without new kernels or fusion across operators.
"""
import argparse

import pandas as pd
import timm
import torch

import moga_lab  # noqa: F401
from moga_lab.cli.common import int_at_least
from moga_lab.models.fuse import NATIVE_BF16, onednn_bf16
from moga_lab.utils.runtime import describe_machine, keep_freed_memory

import throughput  # noqa: E402  (its timing loop, shared by the benchmarks; the script's folder is on sys.path)

PAIRS = {
    'xt': ('moganet_xtiny', 76.5, [('convnext_atto', 75.7)]),
    't': ('moganet_tiny', 79.0, [('convnext_pico', 79.5)]),
    's': ('moganet_small', 83.4, [('convnext_small', 83.1), ('swin_small_patch4_window7_224', 83.2)]),
}


# (convolution-like operators: MACs = output elements x the weight's elements per output channel)
_CONVS = {'conv2d', 'convolution', '_convolution', 'mkldnn_convolution', '_convolution_pointwise'}
_MATMULS = {'mm', 'addmm', 'bmm', 'baddbmm', 'matmul', 'linear'}


def _macs_of(func, args, out) -> int:
    """Multiply-accumulates of one ATen call from its shapes (0 for operators without a weight or a product)."""
    name = func._schema.name.split('::')[-1]
    if name in _CONVS:
        weight = args[2] if func._overloadname == 'binary' else args[1]  # binary: (x, other, weight, ...)
        return out.numel() * weight[0].numel() if weight.dim() >= 3 else 0
    if name in _MATMULS:
        inner = args[1].shape[-1] if name in ('addmm', 'baddbmm') else args[0].shape[-1]
        return out.numel() * inner
    if name in ('scaled_dot_product_attention', '_scaled_dot_product_flash_attention_for_cpu'):
        q, k = args[0], args[1]  # [..., N, d] x [..., M, d]: q k^T and (attn) v, N x M x d each
        return 2 * q.numel() * k.shape[-2]
    return 0


def operator_name(func, args) -> str:
    """The ATen operator, and for convolutions their kind (depth-wise, 1x1, kxk): how the breakdown groups calls."""
    name = str(func)
    if func._schema.name.split('::')[-1] in _CONVS:
        weight = args[2] if func._overloadname == 'binary' else args[1]
        if weight.dim() == 4:
            kind = 'depth-wise' if weight.shape[1] == 1 else f'{weight.shape[-2]}x{weight.shape[-1]}'
            name += f' ({kind} {weight.shape[-2]}x{weight.shape[-1]})' if kind == 'depth-wise' else f' ({kind})'
    return name


def operator_traffic(model: torch.nn.Module, x: torch.Tensor, bf16: bool = False):
    """[(operator, bytes moved, MACs)] for every top-level ATen operator one forward pass of ``model`` on ``x``
    dispatches (in inference mode, under bfloat16 autocast if ``bf16``): see the module docstring."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten
    rows = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            ins = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
            outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
            in_ptrs = {t.data_ptr() for t in ins if not t.is_mkldnn}  # (oneDNN's opaque tensors have none)
            writes = any(a.alias_info is not None and a.alias_info.is_write for a in func._schema.arguments)
            if func.is_view or (not writes and outs and all(not t.is_mkldnn and t.data_ptr() in in_ptrs for t in outs)):
                ins, outs = [], []
            seen, nbytes = set(), 0
            for t in ins + outs:
                key = (t.data_ptr(), t.numel(), t.dtype) if not t.is_mkldnn else id(t)
                if key not in seen:
                    seen.add(key)
                    nbytes += t.numel() * t.element_size()
            first = next((t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)), None)
            rows.append((operator_name(func, args), nbytes, _macs_of(func, args, first) if first is not None else 0))
            return out
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16), Record():
        model(x)
    return rows


def time_operators(model: torch.nn.Module, x: torch.Tensor, bf16: bool = False, alone: int = 0):
    """{operator name: [calls, seconds, seconds alone]} of one forward pass (after one untimed): each top-level ATen
    call timed where the model makes it (its caches as the model leaves them; eager CPU operators are synchronous),
    and, with ``alone`` > 0, the best of ``alone`` repeats of the same call on the same inputs right after it (warm
    caches, operators that write into an input given a fresh copy each time): what today's kernel does on that shape
    at its best. Without ``alone`` the third number equals the second."""
    import time
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_map
    times = {}

    def fresh(t):
        return t.clone() if isinstance(t, torch.Tensor) and not t.is_mkldnn else t

    class Time(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            start = time.perf_counter()
            out = func(*args, **kwargs)
            seconds = best = time.perf_counter() - start
            writes = any(a.alias_info is not None and a.alias_info.is_write for a in func._schema.arguments)
            for _ in range(alone):
                a, k = tree_map(fresh, (args, kwargs)) if writes else (args, kwargs)
                start = time.perf_counter()
                func(*a, **k)
                best = min(best, time.perf_counter() - start)
            entry = times.setdefault(operator_name(func, args), [0, 0.0, 0.0])
            entry[0] += 1
            entry[1] += seconds
            entry[2] += best
            return out
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
        model(x)
        with Time():
            model(x)
    return times


def breakdown(name: str, model: torch.nn.Module, column, peaks, curve, top: int = 6, times=None):
    """Rows of the per-operator breakdown (``--breakdown``): the ``top`` operators by measured time in one forward
    pass, each with its roofline time (summed over its calls), the share of it reached, and its calls' best time
    alone (``time_operators``; pass its result as ``times`` to reuse it)."""
    x = torch.randn(column[0], 3, 224, 224).contiguous(memory_format=torch.channels_last)
    times = times or time_operators(model, x, column[1], alone=3)
    floor = {}
    for op, nbytes, n_macs in operator_traffic(model, x, column[1]):
        floor[op] = floor.get(op, 0.0) + roofline_seconds([(op, nbytes, n_macs)], peaks[column[1]], curve)
    total = sum(t for _, t, _ in times.values())
    rows = []
    for op, (calls, seconds, alone) in sorted(times.items(), key=lambda kv: -kv[1][1])[:top]:
        rows.append({'model': name, 'column': f'batch {column[0]} {"bf16" if column[1] else "fp32"}', 'operator': op,
                     'calls': calls, 'measured ms': round(1e3 * seconds, 1), 'share of forward': f'{100 * seconds / total:.0f} %',
                     'alone ms': round(1e3 * alone, 1), 'roofline ms': round(1e3 * floor.get(op, 0.0), 1),
                     'roofline / measured': f'{100 * floor.get(op, 0.0) / seconds:.0f} %'})
    return rows


def kernel_floor(pairs, best, columns, times):
    """The kernel floor (``--breakdown``): every operator of one forward pass at its best time alone
    (``time_operators``), summed: the most images/s today's kernels allow this operator graph, run operator by
    operator; per model and column, then MogaNet at its kernel floor against its peer as measured."""
    rate, rows = {}, []
    for name in models_of(pairs):
        row = {'model': name}
        for c in columns:
            t = times[(name, c)]
            inside, alone = sum(v[1] for v in t.values()), sum(v[2] for v in t.values())
            rate[(name, c)] = c[0] / alone
            row[f'batch {c[0]} {"bf16" if c[1] else "fp32"}'] = (
                f'{1e3 * inside:.0f} ms inside, {1e3 * alone:.0f} ms alone: <= {rate[(name, c)]:.0f}/s, '
                f'now {100 * best[(name, c)] / rate[(name, c)]:.0f} %')
        rows.append(row)
    print('\nKernel floor: one forward pass, every operator timed inside the model and at its best alone (same inputs, '
          'warm caches), summed per batch; the images/s of the kernel floor and the share of it measured now:')
    print(pd.DataFrame(rows).to_markdown(index=False))
    print('\nMogaNet / peer: measured now; MogaNet at its kernel floor against the peer as measured (below 1.0x, that '
          'column needs faster kernels for MogaNet\'s shapes or fusion across operators); both at their kernel floors:')
    print(pd.DataFrame(against_bound(pairs, best, columns, rate, 'kernel floors')).to_markdown(index=False))


def count_operators(model: torch.nn.Module, x: torch.Tensor) -> int:
    """ATen operators one forward pass of ``model`` dispatches (top level: an operator's own internals not counted)."""
    return len(operator_traffic(model, x))


def bandwidth_curve(sizes_mb=(1, 4, 16, 64, 256, 512), repeats: int = 5):
    """[(MB, GB/s)]: the best rate of ``a + b -> c`` on float32 tensors whose three buffers hold ``MB`` in all
    (bytes read and written per second), for working sets from the caches out to memory."""
    import time
    curve = []
    for mb in sizes_mb:
        n = mb * 2 ** 20 // 12
        a, b, c = torch.randn(n), torch.randn(n), torch.empty(n)
        torch.add(a, b, out=c)
        best = float('inf')
        for _ in range(max(repeats, 64 // mb)):
            start = time.perf_counter()
            torch.add(a, b, out=c)
            best = min(best, time.perf_counter() - start)
        curve.append((mb, 12 * n / best / 1e9))
    return curve


def roofline_seconds(rows, peak_gmacs: float, curve) -> float:
    """The least time of the operator graph ``rows`` (``operator_traffic``) run operator by operator: each operator
    the longer of its MACs at ``peak_gmacs`` and its bytes at the bandwidth ``curve`` gives a working set of its size
    (the smallest measured size that holds it; beyond the largest, the largest's)."""
    total = 0.0
    for _, nbytes, n_macs in rows:
        gbs = next((g for mb, g in curve if nbytes <= mb * 2 ** 20), curve[-1][1])
        total += max(n_macs / (peak_gmacs * 1e9), nbytes / (gbs * 1e9))
    return total


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
    """Multiply-accumulates per 224 px image (FlopCounterMode, on the unfused model: the folds remove no MACs it counts)."""
    return float(throughput.macs(timm.create_model(name), 224))


def matmul_peaks(peaks=None, bf16: bool = True):
    """{bf16: GMAC/s}: the float32 (and, if ``bf16``, bfloat16) matmul peaks measured now, or the best of these and
    ``peaks``. (Without native bfloat16 one 2048^2 bfloat16 product takes ~85 s on one AVX2 core: not measured then.)"""
    now = {False: throughput.matmul_peak(torch.float32) / 2}
    if bf16:
        now[True] = throughput.matmul_peak(torch.bfloat16) / 2
    return {k: max(v, (peaks or {}).get(k, 0.0)) for k, v in now.items()}


def best_curve(curve=None):
    """``bandwidth_curve()`` measured now, best per size with ``curve`` (the bandwidth measured in earlier rounds)."""
    now = bandwidth_curve()
    return [(mb, max(g, dict(curve or []).get(mb, 0.0))) for mb, g in now]


def limits(pairs, best, columns, peaks, curve):
    """The compute-bound, roofline and per-operator tables (module docstring) from the rates, matmul peaks and
    bandwidths measured in this run."""
    op_us = cheapest_operator_us()
    print(f'\nmatrix-multiply peak (best of the rounds, measured between the models): {peaks[False]:.0f} GMAC/s '
          'float32' + (f', {peaks[True]:.0f} GMAC/s bfloat16' if True in peaks else '')
          + f'; cheapest operator {op_us:.1f} us; a + b -> c bandwidth by '
          'working set: ' + ', '.join(f'{mb} MB {g:.0f} GB/s' for mb, g in curve))
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
                         'ceiling bf16 (images/s)': round(peaks[True] * 1e9 / m['macs']) if True in peaks else 'n/a',
                         'operators / forward': ops, 'operator floor (ms)': round(ops * op_us / 1e3, 2)})
    print(pd.DataFrame(rows).to_markdown(index=False))
    table = []
    for key in pairs:
        moga, _, peers = PAIRS[key]
        ceiling = {bf16: peaks[bf16] * 1e9 / per_model[moga]['macs'] for bf16 in peaks}
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
    roofline(pairs, best, columns, peaks, curve)


def against_bound(pairs, best, columns, bound, label: str):
    """Table rows per pair and column: MogaNet / peer as measured, MogaNet at ``bound`` (images/s per (model,
    column)) against the peer as measured, and both at their ``bound``."""
    table = []
    for key in pairs:
        moga, _, peers = PAIRS[key]
        for peer, _ in peers:
            row = {'pair': f'{moga} vs {peer}'}
            for c in columns:
                row[f'batch {c[0]} {"bf16" if c[1] else "fp32"}'] = (
                    f'{best[(moga, c)] / best[(peer, c)]:.2f}x now, <= {bound[(moga, c)] / best[(peer, c)]:.2f}x; '
                    f'both at their {label} {bound[(moga, c)] / bound[(peer, c)]:.2f}x')
            table.append(row)
    return table


def roofline(pairs, best, columns, peaks, curve):
    """The operator-by-operator memory bound (module docstring) for every model and column, then per pair."""
    ceiling, rows = {}, []
    for name in models_of(pairs):
        model, row = build(name), {'model': name}
        for c in columns:
            x = torch.randn(c[0], 3, 224, 224).contiguous(memory_format=torch.channels_last)
            ops = operator_traffic(model, x, bf16=c[1])
            ceiling[(name, c)] = c[0] / roofline_seconds(ops, peaks[c[1]], curve)
            row[f'batch {c[0]} {"bf16" if c[1] else "fp32"}'] = (
                f'{sum(b for _, b, _ in ops) / c[0] / 1e6:.0f} MB, <= {ceiling[(name, c)]:.0f}/s, '
                f'now {100 * best[(name, c)] / ceiling[(name, c)]:.0f} %')
        rows.append(row)
    print('\nRoofline, operator by operator: bytes moved per image, the most images/s the operator graph allows '
          'when each operator runs at the matmul peak or the measured bandwidth for its working set, and the share '
          'of that ceiling measured now:')
    print(pd.DataFrame(rows).to_markdown(index=False))
    print('\nMogaNet / peer: measured now; MogaNet at its roofline ceiling against the peer as measured (below 1.0x, '
          'that column needs fusion across operators); both at their ceilings:')
    print(pd.DataFrame(against_bound(pairs, best, columns, ceiling, 'ceilings')).to_markdown(index=False))


def models_of(pairs):
    """The models of ``pairs`` (keys of PAIRS), each once, MogaNet before its peers."""
    return list(dict.fromkeys(n for key in pairs for n in [PAIRS[key][0]] + [p for p, _ in PAIRS[key][2]]))


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
    p.add_argument('--breakdown', action='store_true', help='also time every operator inside each model (first batch '
                   'size, each precision) against its roofline: where each model loses time')
    p.add_argument('--precisions', nargs='+', choices=('fp32', 'bf16'), default=None,
                   help=f'default: fp32, and bf16 where the CPU has {NATIVE_BF16}; elsewhere bf16 autocast runs '
                        'emulated, many times slower, and is left out')
    args = p.parse_args(argv)
    if args.precisions is None:
        args.precisions = ['fp32', 'bf16'] if onednn_bf16() else ['fp32']
        if not onednn_bf16():
            print(f'bf16 columns left out: this CPU has no {NATIVE_BF16}; --precisions fp32 bf16 measures the '
                  'emulated path', flush=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()
    columns = [(b, bf16) for b in args.batch_sizes for bf16 in (False, True) if ('bf16' if bf16 else 'fp32') in args.precisions]
    print(f'{describe_machine()}, {torch.get_num_threads()} threads, timm {timm.__version__}; '
          f'224 px, channels_last, best of {args.rounds} rounds of the median of {args.repeats} batches', flush=True)
    rows, rates, peaks, curve = [], {}, None, None
    for key in args.pairs:
        moga, moga_top1, peers = PAIRS[key]
        names = [(moga, moga_top1)] + peers
        models = {n: build(n) for n, _ in names}
        best = {(n, c): 0.0 for n, _ in names for c in columns}
        for _ in range(args.rounds):
            if not args.no_limits:  # the peak in every round, as the rates: the machine's slow moments hit both
                peaks, curve = matmul_peaks(peaks, 'bf16' in args.precisions), best_curve(curve)
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
        limits(args.pairs, rates, columns, peaks, curve)
        if args.breakdown:
            rows, times = [], {}
            for name in models_of(args.pairs):
                model = build(name)
                for c in columns:
                    x = torch.randn(c[0], 3, 224, 224).contiguous(memory_format=torch.channels_last)
                    times[(name, c)] = time_operators(model, x, c[1], alone=3)
                for c in [c for c in columns if c[0] == args.batch_sizes[0]]:
                    rows += breakdown(name, model, c, peaks, curve, times=times[(name, c)])
            print('\nWhere the time goes: the operators taking most of one forward pass, timed inside the model and '
                  'alone, against their operator-by-operator roofline (above):')
            print(pd.DataFrame(rows).to_markdown(index=False))
            kernel_floor(args.pairs, rates, columns, times)


if __name__ == '__main__':
    main()
