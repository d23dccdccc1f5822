"""MogaNet CPU throughput, faithful path vs fast path, with timm baselines, all measured side by side.

    python benchmarks/throughput.py [--variants xtiny tiny small] [--batch-size 16] [--size 224] [--repeats 3]

For each MogaNet variant: inference images/s of the reference computation (NCHW fp32, full dilated kernels:
the reference implementation's sequence of ops), our eager model in channels_last (fp32, bf16 autocast), the
fused inference model (``model.for_inference()``) eager and under ``torch.compile`` (inductor with weight
freezing), fp32 and bf16; and a training step (forward + backward + AdamW), reference computation vs ours
(channels_last, padding-only taps skipped). Baselines: timm ConvNeXt / Swin of similar MACs. Achieved GFLOP/s
(2 x MACs x images/s, MACs from torch's FlopCounterMode; x3 for a training step) is shown as a fraction of a
matrix-multiply peak measured in the same run (2048 x 2048; bf16 rows also against the bf16 peak). Ratios are
against the reference computation measured in a fresh PyTorch process (glibc's allocator untouched); all other rows
run in this process with
``moga_lab.utils.runtime.keep_freed_memory()`` (freed tensor buffers stay in the heap, as the CLIs do), and a row of
the reference computation under it shows how much of a speed-up is the allocator and how much the code.
Baselines run under it too.
Each rate is the median of ``--repeats`` timed batches after two warm-up batches.

``--fused-against REV`` measures only the fused inference model: this tree's against the one ``moga_lab/models/fuse.py``
built at git revision REV (loaded from ``git show``), fp32 and bf16, their timed batches interleaved, and prints the
ratio per variant (a change to the fused path must not make it slower).
"""
import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import pandas as pd
import timm
import torch

import moga_lab  # noqa: F401
from moga_lab.models import fuse as fuse_module, layers
from moga_lab.utils.flops import count_macs
from moga_lab.utils.runtime import keep_freed_memory

BASELINES = {'xtiny': 'convnext_atto', 'tiny': 'convnext_femto', 'small': 'convnext_tiny'}
SWIN = {'small': 'swin_tiny_patch4_window7_224'}


def matmul_peak(dtype, n=2048, repeats=10):
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9


def rate(fn, x, repeats):
    fn(x)
    fn(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return len(x) / statistics.median(times)


@contextlib.contextmanager
def full_dilated_kernels():
    """The reference's computation: every tap of the dilated DW kernels, also those reading only padding."""
    def full(conv, x):
        return conv(x)
    saved = layers.same_dwconv  # (the blocks look it up at call time)
    layers.same_dwconv = full
    try:
        yield
    finally:
        layers.same_dwconv = saved


def compiled(model):
    # what for_inference(compile=True) does: inductor with weight freezing (constant-folds the fused weights,
    # lets oneDNN pre-pack them and fuse the activations into the convolutions)
    torch._dynamo.reset()  # a fresh cache per row: rows of earlier models must not count toward the recompile limit
    return torch.compile(model, options={'freezing': True})


def inference(model, bf16=False):
    @torch.inference_mode()
    def run(x):
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            return model(x)
    return run


def train_step(model):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def run(x):
        loss = model(x).logsumexp(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return run


def macs(model, size):
    return count_macs(model, torch.zeros(1, 3, size, size))


def reference_measurement(name, batch_size, size, repeats, train):
    """Images/s of the reference computation (NCHW fp32, every dilated tap) for inference and a training step."""
    torch.manual_seed(0)
    x = torch.randn(batch_size, 3, size, size)
    model = timm.create_model(name).eval()
    with full_dilated_kernels():
        out = dict(inference=rate(inference(model), x, repeats))
        if train:
            out['train'] = rate(train_step(model.train()), x, max(1, repeats - 2))
    return out


def reference_in_fresh_process(name, args):
    cmd = [sys.executable, __file__, '--reference-child', name, '--batch-size', str(args.batch_size),
           '--size', str(args.size), '--repeats', str(args.repeats)] + (['--no-train'] if args.no_train else [])
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def fuse_at_revision(rev):
    """moga_lab/models/fuse.py as it was at git revision ``rev``, loaded as a module of its own."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(['git', 'show', f'{rev}:moga_lab/models/fuse.py'], capture_output=True, text=True, cwd=root)
    if done.returncode != 0:
        raise SystemExit(f'--fused-against {rev}: no moga_lab/models/fuse.py at that revision here '
                         f'({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "git failed"}); '
                         'accepted: a commit, tag or branch of this repository')
    source = done.stdout
    module = types.ModuleType(f'fuse_at_{rev}')
    exec(compile(source, f'{rev}:moga_lab/models/fuse.py', 'exec'), module.__dict__)
    return module


def interleaved_rates(fns, x, repeats):
    """Images/s of each function, their timed batches taken in turn (so that a drift in the machine's speed
    reaches every one alike): the median per function after two warm-up rounds."""
    times = {name: [] for name in fns}
    for i in range(repeats + 2):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(x)
            if i >= 2:
                times[name].append(time.perf_counter() - start)
    return {name: len(x) / statistics.median(t) for name, t in times.items()}


def fused_against(rev, args, native16):
    old = fuse_at_revision(rev)
    xc = torch.randn(args.batch_size, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)
    rows = []
    for v in args.variants:
        model = timm.create_model(f'moganet_{v}').eval()
        new, before = model.for_inference(), old.fuse_for_inference(model)
        with torch.inference_mode():
            torch.testing.assert_close(new(xc), before(xc), atol=1e-4, rtol=0)  # the same function first
        for bf16 in ([False, True] if native16 else [False]):
            r = interleaved_rates({'this tree': inference(new, bf16), rev: inference(before, bf16)}, xc, args.repeats)
            rows.append(dict(model=f'moganet_{v}', precision='bf16' if bf16 else 'fp32', batch=args.batch_size,
                             size=args.size, this_tree=round(r['this tree'], 2), at_rev=round(r[rev], 2),
                             ratio=round(r['this tree'] / r[rev], 3)))
            print(rows[-1], flush=True)
    from moga_lab.utils.runtime import describe_machine
    text = (f'Images/s of the fused model, this tree against `moga_lab/models/fuse.py` at `{rev}`, measured side by side '
            f'on {describe_machine()} ({torch.get_num_threads()} threads, {args.repeats} interleaved timed batches each; '
            f'`python benchmarks/throughput.py --fused-against {rev} --variants {" ".join(args.variants)} --batch-size '
            f'{args.batch_size} --size {args.size} --repeats {args.repeats}`); ratio above 1: this tree is faster.\n\n'
            + pd.DataFrame(rows).to_markdown(index=False) + '\n')
    print('\n' + text)
    if args.out:
        from moga_lab.utils.atomic import atomic_write_text
        atomic_write_text(args.out, text)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--variants', nargs='+', default=['xtiny', 'tiny', 'small'])
    p.add_argument('--batch-size', type=int, default=16)
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--no-compile', action='store_true', help='skip the torch.compile rows (~1 min each)')
    p.add_argument('--no-train', action='store_true')
    p.add_argument('--fused-against', metavar='REV', help='only the fused model: this tree against fuse.py at REV')
    p.add_argument('--out', help='with --fused-against: also write its table (markdown) here')
    p.add_argument('--reference-child', metavar='MODEL', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.reference_child:  # the baseline measurement, run by the parent in a fresh process
        print(json.dumps(reference_measurement(args.reference_child, args.batch_size, args.size, args.repeats,
                                               not args.no_train)))
        return
    keep_freed_memory()
    torch.manual_seed(0)
    if args.fused_against:
        fused_against(args.fused_against, args, fuse_module.onednn_bf16())
        return
    # bf16 rows only where the CPU has native bfloat16 (emulated, one 2048^2 bf16 product takes ~85 s on an AVX2 core)
    native16 = fuse_module.onednn_bf16()
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16) if native16 else float('nan')
    print(f'matmul peak: {peak32:.0f} GFLOP/s fp32, {peak16:.0f} GFLOP/s bf16 ({torch.get_num_threads()} threads)'
          + ('' if native16 else f'; bf16 rows left out: this CPU has no {fuse_module.NATIVE_BF16}'))
    x = torch.randn(args.batch_size, 3, args.size, args.size)
    xc = x.contiguous(memory_format=torch.channels_last)
    rows = []

    def add(model_name, mode, ips, mac, base=None):
        gflops = 2 * mac * ips / 1e9
        rows.append(dict(model=model_name, mode=mode, images_per_s=round(ips, 2),
                         x_plain=round(ips / base, 2) if base else 1.0, GFLOPs=round(gflops, 1),
                         pct_of_fp32_peak=round(100 * gflops / peak32, 1),
                         pct_of_bf16_peak=round(100 * gflops / peak16, 1) if 'bf16' in mode else None))
        print(rows[-1], flush=True)

    for v in args.variants:
        name = f'moganet_{v}'
        model = timm.create_model(name).eval()
        mac = macs(model, args.size)
        # the baseline: the reference computation in a fresh, plain PyTorch process (glibc's allocator untouched;
        # inside this process the heap already holds freed pages, which would flatter the reference)
        ref = reference_in_fresh_process(name, args)
        add(name, 'inference fp32 NCHW, reference computation (fresh process)', ref['inference'], mac)
        plain = ref['inference']
        with full_dilated_kernels():
            add(name, 'inference fp32 NCHW, reference computation, keep_freed_memory',
                rate(inference(model), x, args.repeats), mac, plain)
        cl = model.to(memory_format=torch.channels_last)
        add(name, 'inference fp32 channels_last', rate(inference(cl), xc, args.repeats), mac, plain)
        if native16:
            add(name, 'inference bf16 channels_last', rate(inference(cl, True), xc, args.repeats), mac, plain)
        fused = model.for_inference()
        with fuse_module.onednn_post_ops(False):
            add(name, 'inference fp32 fused, plain ops (no oneDNN post-ops)', rate(inference(fused), xc, args.repeats),
                mac, plain)
        add(name, 'inference fp32 fused (for_inference)', rate(inference(fused), xc, args.repeats), mac, plain)
        if native16:
            with fuse_module.onednn_post_ops(False):
                add(name, 'inference bf16 fused, plain ops (no oneDNN post-ops)',
                    rate(inference(fused, True), xc, args.repeats), mac, plain)
            add(name, 'inference bf16 fused', rate(inference(fused, True), xc, args.repeats), mac, plain)
        if not args.no_compile:
            add(name, 'inference fp32 fused + torch.compile', rate(inference(compiled(fused)), xc, args.repeats),
                mac, plain)
            if native16:
                add(name, 'inference bf16 fused + torch.compile',
                    rate(inference(compiled(fused), True), xc, args.repeats), mac, plain)
        if not args.no_train:
            t_plain = ref['train']
            add(name, 'train step fp32 NCHW, reference computation (fresh process)', t_plain, 3 * mac)
            torch.manual_seed(0)
            model = timm.create_model(name).train()
            with full_dilated_kernels():
                add(name, 'train step fp32 NCHW, reference computation, keep_freed_memory',
                    rate(train_step(model), x, max(1, args.repeats - 2)), 3 * mac, t_plain)
            model = model.to(memory_format=torch.channels_last)
            add(name, 'train step fp32 channels_last', rate(train_step(model), xc, max(1, args.repeats - 2)),
                3 * mac, t_plain)
        for base in (BASELINES.get(v), SWIN.get(v)):
            if base:
                b = timm.create_model(base).eval().to(memory_format=torch.channels_last)
                add(base, 'inference fp32 channels_last', rate(inference(b), xc, args.repeats), macs(b, args.size))
    table = pd.DataFrame(rows)
    print()
    print(table.to_markdown(index=False))


if __name__ == '__main__':
    main()
