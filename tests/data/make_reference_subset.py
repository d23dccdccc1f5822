"""Cut the stem + stage-1 slice out of the shared reference fixtures, so the numerics test runs on any clone.

    python tests/data/make_reference_subset.py [--fixtures ../shared/fixtures/reference-moganet]

The full fixtures (23 MB, ``../shared/fixtures/reference-moganet/``) are not vendored. Stage 1 of MogaNet-XT
(stem, three blocks with every component — BatchNorm, multi-order DW convs, gating, FFN with channel
aggregation, layer scales — and the stage norm) is 84k parameters; its output ``features[0]`` was computed by the
reference implementation, so the slice is still a reference fact, not a regression snapshot of our own code.
The official key/shape listings are small text and are copied gzipped beside it.
"""
import argparse
import gzip
import shutil
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
STAGE1_PREFIXES = ('patch_embed1.', 'blocks1.', 'norm1.')


def main():
    root = HERE.parents[2] / 'shared'
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--fixtures', type=Path, default=root / 'fixtures' / 'reference-moganet')
    p.add_argument('--official', type=Path, default=root / 'reference' / 'official-state-dict')
    args = p.parse_args()
    for folder, what in ((args.fixtures, '--fixtures'), (args.official, '--official')):
        if not folder.is_dir():
            p.error(f'{what} {folder} is not a directory; give the shared reference folder it names')
    out = {}
    for name in ('xtiny_seed0_64px', 'xtiny_seed1_64px_force_fp32'):
        fx = torch.load(args.fixtures / f'{name}.pt', map_location='cpu', weights_only=False)
        out[name] = dict(
            arch=fx['arch'], attn_force_fp32=bool(fx['attn_force_fp32']),
            state_dict={k: v.clone() for k, v in fx['state_dict'].items() if k.startswith(STAGE1_PREFIXES)},
            input=fx['input'].clone(), stage1_features=fx['features'][0].clone())
    torch.save(out, HERE / 'reference_xtiny_stage1.pt')
    official = HERE / 'official-state-dict'
    official.mkdir(exist_ok=True)
    for txt in sorted(args.official.glob('moganet_*.txt')):
        # mtime=0: the same listing gives the same bytes, so regenerating does not churn git
        with open(txt, 'rb') as src, open(official / f'{txt.name}.gz', 'wb') as raw, \
                gzip.GzipFile(fileobj=raw, mode='wb', mtime=0, filename='') as dst:
            shutil.copyfileobj(src, dst)
    print('wrote', HERE / 'reference_xtiny_stage1.pt', 'and', official)


if __name__ == '__main__':
    main()
