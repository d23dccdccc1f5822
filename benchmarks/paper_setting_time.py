"""Time per image of the paper's interaction setting (224 px, 14x14 grid, 50 pairs, precision mode) through the
command a user runs on released weights, one model at a time:

    python benchmarks/paper_setting_time.py [--models moganet_tiny convnext_tiny swin_tiny_patch4_window7_224]
        [--weights-dir DIR] [--data-dir IMAGENET] [--max-forwards 27500] [--bf16] [--out runs/paper_setting_time]

Without ``--weights-dir`` the weights are random (written in the release / timm layouts): the cost of a run at its
forward-pass cap does not depend on the weights, but the precision mode may stop earlier on real weights. Without
``--data-dir`` one generated 224 px image is used. Prints masked forward passes, wall time and passes per second.
"""
import argparse
import os
import shutil
import time

import numpy as np
import torch


import moga_lab  # noqa: E402,F401
from moga_lab.cli import interaction  # noqa: E402


def _weights(name: str, folder: str) -> str:
    import timm
    path = os.path.join(folder, f'{name}.pth.tar')
    if not os.path.isfile(path):
        torch.manual_seed(0)
        state = timm.create_model(name).state_dict()
        torch.save({'state_dict': state} if name.startswith('moganet') else state, path)
    return path


def _image_folder(folder: str) -> str:
    from PIL import Image
    root = os.path.join(folder, 'images')
    cls = os.path.join(root, 'n01440764')
    if not os.path.isdir(cls):
        os.makedirs(cls)
        y, x = np.mgrid[0:256, 0:320]
        pixels = np.stack([(x * 0.8) % 255, (y * 0.9) % 255, ((x + y) * 0.4) % 255], -1).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(cls, 'smooth.JPEG'))
    return root


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', nargs='+', default=['moganet_tiny', 'convnext_tiny', 'swin_tiny_patch4_window7_224'])
    p.add_argument('--weights-dir', help='FOLDER/<model>.pth.tar per model (default: random weights written to --out)')
    p.add_argument('--data-dir', help='an ImageFolder (default: one generated image)')
    p.add_argument('--target-ci', default='0.05')
    p.add_argument('--max-forwards', default='27500', help="cap per image (default 25 %% of the authors' 110k)")
    p.add_argument('--bf16', action='store_true')
    p.add_argument('--out', default='runs/paper_setting_time')
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    data = args.data_dir or _image_folder(args.out)
    rows = []
    for name in args.models:
        weights = os.path.join(args.weights_dir, f'{name}.pth.tar') if args.weights_dir else _weights(name, args.out)
        out = os.path.join(args.out, name + ('_bf16' if args.bf16 else '_fp32'))
        shutil.rmtree(out, ignore_errors=True)  # a measurement, not a resume
        start = time.perf_counter()
        interaction.main(['--model', name, '--weights', weights, '--data-dir', data, '--num-images', '1',
                          '--target-ci', args.target_ci, '--max-forwards', args.max_forwards, '--out', out]
                         + (['--bf16'] if args.bf16 else []))
        seconds = time.perf_counter() - start
        import pandas as pd
        frame = pd.read_csv(os.path.join(out, 'interaction.csv'))
        forwards = int(frame.forwards.iloc[0])
        rows.append((name, forwards, seconds))
    print(f'\n{"bf16" if args.bf16 else "fp32"}, 224 px, 14x14 grid, 50 pairs, --target-ci {args.target_ci}, '
          f'--max-forwards {args.max_forwards}, {torch.get_num_threads()} threads')
    print('| model | forward passes | min per image | passes/s |')
    print('|---|---:|---:|---:|')
    for name, forwards, seconds in rows:
        print(f'| {name} | {forwards:,} | {seconds / 60:.1f} | {forwards / seconds:.0f} |')


if __name__ == '__main__':
    main()
