"""GPU throughput, measured side by side in one run: inference images/s of MogaNet-T, ConvNeXt-T and Swin-T at
224 px (batch 64, fp32 and bf16 autocast; MogaNet eager and through ``for_inference()``), and masked images/s of the
image game (MogaNet-T, 14x14 grid, batch 256, bf16).

    python benchmarks/gpu_throughput.py [--batch-size 64] [--repeats 10] [--out FILE.md]

Ratios are against ConvNeXt-T in the same run. Each rate is the median of ``--repeats`` timed batches after warm-up,
with ``torch.cuda.synchronize()`` around each.
"""
import argparse
import statistics
import time

import timm
import torch

import moga_lab  # noqa: F401  (registers moganet_*)
from moga_lab.utils.runtime import describe_machine

MODELS = ('moganet_tiny', 'convnext_tiny', 'swin_tiny_patch4_window7_224')


def rate(fn, x, repeats):
    for _ in range(3):
        fn(x)
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn(x)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return len(x) / statistics.median(times)


def forward(model, bf16):
    def run(x):
        with torch.no_grad(), torch.autocast('cuda', dtype=torch.bfloat16, enabled=bf16):
            return model(x)
    return run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--repeats', type=int, default=10)
    p.add_argument('--out')
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit('gpu_throughput.py: no CUDA GPU here')
    x = torch.randn(args.batch_size, 3, 224, 224, device='cuda').to(memory_format=torch.channels_last)
    rows = []
    for name in MODELS:
        model = timm.create_model(name).cuda().eval().to(memory_format=torch.channels_last)
        variants = [(name, model)] + ([(name + ' for_inference()', model.for_inference())]
                                      if name.startswith('moganet') else [])
        for label, m in variants:
            rows.append((label, rate(forward(m, False), x, args.repeats), rate(forward(m, True), x, args.repeats)))
    ref = next(r for r in rows if r[0] == 'convnext_tiny')
    lines = [f'GPU: {torch.cuda.get_device_name()}; host {describe_machine()}; batch {args.batch_size}, 224 px',
             '', '| model | fp32 images/s | bf16 images/s | fp32 vs ConvNeXt-T | bf16 vs ConvNeXt-T |',
             '| --- | ---: | ---: | ---: | ---: |']
    lines += [f'| {n} | {a:,.0f} | {b:,.0f} | {a / ref[1]:.2f}x | {b / ref[2]:.2f}x |' for n, a, b in rows]
    from moga_lab.analysis.estimate import InteractionSettings, evaluation_model, interaction_strength
    model = timm.create_model('moganet_tiny').cuda().eval()
    settings = InteractionSettings(grid=14, num_pairs=8, num_contexts=8, bf16=True, batch_size=256)
    image, label = torch.randn(1, 3, 224, 224, device='cuda'), torch.tensor([0], device='cuda')
    runner = evaluation_model(model, settings)
    interaction_strength(runner, image, label, InteractionSettings(grid=14, num_pairs=2, num_contexts=2, bf16=True))
    torch.cuda.synchronize()
    start = time.perf_counter()
    table = interaction_strength(runner, image, label, settings)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    forwards = int(table['forwards'].iloc[0]) if 'forwards' in table else None
    lines += ['', f'Image game (MogaNet-T, 14x14 grid, 8 pairs x 8 contexts x 13 orders, bf16): {seconds:.1f} s'
              + (f', {forwards / seconds:,.0f} masked images/s' if forwards else '')]
    print('\n'.join(lines))
    if args.out:
        from moga_lab.utils.atomic import atomic_write_text
        atomic_write_text(args.out, '\n'.join(lines) + '\n')


if __name__ == '__main__':
    main()
