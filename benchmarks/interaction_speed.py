"""How fast the interaction estimator evaluates masked images, relative to the model's plain batched
throughput at the same batch size, and the wall time of one full default curve on one image.

    python benchmarks/interaction_speed.py [--variant xtiny] [--batch-size 256] [--bf16]

Everything is measured side by side in this one run; the ratio (masked evaluations/s over plain images/s)
is the number that matters: 1.0 means the game adds no overhead to the forward passes.
"""
import argparse
import time

import torch

from moga_lab.analysis.games import ImageGame, default_settings, interaction_strength
from moga_lab.analysis.interaction import evaluate_unique
from moga_lab.models import MogaNet


def images_per_second(fn, batch, repeats):
    fn(batch)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn(batch)
    return repeats * len(batch) / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--variant', default='xtiny')
    p.add_argument('--batch-size', type=int, default=256)
    p.add_argument('--repeats', type=int, default=8)
    p.add_argument('--bf16', action='store_true')
    p.add_argument('--image-size', type=int, default=28)
    args = p.parse_args()
    torch.manual_seed(0)
    size = args.image_size
    model = MogaNet(args.variant, num_classes=10, in_chans=1, stem_stride=2 if size <= 64 else 4).eval()
    model.to(memory_format=torch.channels_last)
    image = torch.randn(1, size, size)
    settings = default_settings(size)
    settings.bf16 = args.bf16
    settings.batch_size = args.batch_size
    game = ImageGame(model, image, 3, settings.grid, bf16=args.bf16)
    n = game.n_players

    plain_batch = torch.randn(args.batch_size, 1, size, size).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def plain(x):
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=args.bf16):
            return model(x)

    masks = torch.rand(args.batch_size * args.repeats, n) < 0.5
    plain_ips = images_per_second(plain, plain_batch, args.repeats)
    game(masks[:args.batch_size])
    start = time.perf_counter()
    evaluate_unique(game, masks, batch_size=args.batch_size)
    masked_ips = len(masks) / (time.perf_counter() - start)
    plain_ips2 = images_per_second(plain, plain_batch, args.repeats)  # bracket the masked run (drift check)

    label = torch.tensor([3])
    evaluations = []
    start = time.perf_counter()
    interaction_strength(model, image[None], label, settings, progress=evaluations.append)
    curve_seconds = time.perf_counter() - start
    total_coalitions = len(settings.ratios) * settings.num_pairs * settings.num_contexts * 4
    print(f'MogaNet-{args.variant}, {size}px, batch {args.batch_size}, {"bf16" if args.bf16 else "fp32"}, '
          f'{torch.get_num_threads()} threads')
    print(f'| plain batched forward | {plain_ips:.0f} / {plain_ips2:.0f} images/s (before / after) |')
    print(f'| masked evaluations (ImageGame) | {masked_ips:.0f} evaluations/s = '
          f'{masked_ips / ((plain_ips + plain_ips2) / 2):.2f} x plain |')
    print(f'| one default curve ({settings.grid}x{settings.grid} grid, {settings.num_pairs} pairs, '
          f'{settings.num_contexts} contexts, {len(settings.ratios)} orders) | {curve_seconds:.1f} s; '
          f'{sum(evaluations)} distinct coalitions evaluated of {total_coalitions} |')


if __name__ == '__main__':
    main()
