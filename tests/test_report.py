"""moga_lab.studies.report: a published seeded study rendered into its figures and report."""
import numpy as np
import pandas as pd
import pytest
import torch

from moga_lab.analysis.estimate import InteractionSettings, interaction_strength
from moga_lab.analysis.seeds import middle_share_by_seed
from moga_lab.studies.report import seed_study_report


def _published(folder, models=('moga', 'conv'), seeds=(0, 1, 2)):
    """What `moga-study publish` gathers: the same 4 images, pairs and contexts for every (model, seed)."""
    from moga_lab.models import MogaNet
    settings = InteractionSettings(grid=4, num_pairs=3, num_contexts=4, ratios=(0.0, 0.3, 0.5, 1.0), batch_size=64)
    images, labels = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0)), torch.tensor([1, 2, 3, 4])
    frames, accuracy = [], []
    for k, model in enumerate(models):
        for seed in seeds:
            torch.manual_seed(10 * k + seed)
            net = MogaNet('xtiny', num_classes=10, in_chans=1, stem_stride=2).eval()
            frames.append(interaction_strength(net, images, labels, settings, model_name=model).assign(seed=seed))
            accuracy.append(dict(model=model, seed=seed, test_top1=90 + k + 0.1 * seed, val_top1=91.0, lr=2e-3))
    folder.mkdir(parents=True)
    pd.concat(frames).to_csv(folder / 'interaction_seeds.csv', index=False)
    pd.DataFrame(accuracy).to_csv(folder / 'accuracy.csv', index=False)
    pd.DataFrame(dict(model=np.repeat(list(models), 6), image_id=np.tile(range(6), len(models)),
                      cam_on_garment=[0.6, 0.7, 0.65, 0.8, 0.7, 0.75] + [0.4, 0.5, 0.45, 0.5, 0.6, 0.55],
                      garment_area=0.4)).to_csv(folder / 'gradcam.csv', index=False)
    pd.DataFrame([dict(model=m, lr=lr, val_top1=v, val_images=5000, epochs=1, seed=0, chosen=False)
                  for m, values in zip(models, ([80.0, 82.0, 81.0], [80.0, 81.0, 83.0]))
                  for lr, v in zip((1e-3, 2e-3, 4e-3), values)]).to_csv(folder / 'sweep.csv', index=False)
    pd.DataFrame([dict(unit=f'fit-{m}-s{s}', model=m, seed=s, minutes=10.0, machine='AMD EPYC (AVX2), 2 cores')
                  for m in models for s in seeds]).to_csv(folder / 'units.csv', index=False)
    return pd.concat(frames)


def test_a_seeded_study_report_renders_both_statistics_from_its_tables(tmp_path):
    folder = tmp_path / 'compare'
    frame = _published(folder)
    text = seed_study_report(str(folder), 'MogaNet vs ConvNeXt', reference='moga', design='One recipe.')
    for name in ('report.md', 'curves.png', 'seed_shares.png', 'seed_shares.csv'):
        assert (folder / name).stat().st_size > 0
    shares = pd.read_csv(folder / 'seed_shares.csv')
    assert set(shares.statistic) == {'mean-abs', 'rms'} and len(shares) == 2 * 2 * 3
    # the table's numbers are those of the analysis functions on the published rows
    expected = middle_share_by_seed(frame, statistic='rms').set_index(['model', 'seed'])
    got = shares[shares.statistic == 'rms'].set_index(['model', 'seed'])
    pd.testing.assert_series_equal(got.share.sort_index(), expected.share.sort_index())
    moga = got.loc['moga'].share
    assert f'| moga | {moga[0]:.3f} [' in text and f'{moga.mean():.3f} ± {moga.std(ddof=1):.3f} |' in text
    assert '| moga | 0.002 | 90.00 | 90.10 | 90.20 | 90.10 ± 0.10 | 91.00 ± 0.00 |' in text
    assert '## Grad-CAM' in text and '| conv | 0.500 (' in text and '+0.200 (+' in text   # paired: moga - conv
    assert 'both of their maps are non-zero (6 for conv)' in text   # the claims' pairing, said beside the table
    assert 'AMD EPYC (AVX2), 2 cores: 6 units, 1.0 h: fit-moga-s0..2, fit-conv-s0..2' in text   # each unit named
    assert '## Recipe' not in text     # no configs.csv
    assert '| moga | 80.00 | **82.00** | 81.00 | 0.002 |' in text
    assert '| conv | 80.00 | 81.00 | **83.00** | 0.004 (an end of the grid) |' in text
    assert text.startswith('# MogaNet vs ConvNeXt\n\nOne recipe.\n')
    assert 'Declared claims' not in text     # no claims.csv yet
    # a published claims.csv: a computed claim with its numbers, one whose data are missing without 'nan'
    claim = dict(correction='Holm', family_size=2, primary=True, role='claim', note='')
    nan = float('nan')
    pd.DataFrame([dict(claim_id='top1', statistic=nan, estimate=1.0, low=0.5, high=1.5, p=0.001, p_adjusted=0.002,
                       family_low=0.3, family_high=1.7, decidable_effect=0.9, bias_bound=nan,
                       sources='training seeds and the test images', what='top-1',
                       verdict='decided, as declared (Holm over 2 claims)', **claim),
                  dict(claim_id='middle', statistic='mean-abs', estimate=nan, low=nan, high=nan, p=nan, p_adjusted=nan,
                       family_low=nan, family_high=nan, decidable_effect=nan, bias_bound=nan, sources=nan,
                       what='middle', verdict='not computed', **claim)]).to_csv(folder / 'claims.csv', index=False)
    text = seed_study_report(str(folder), 'MogaNet vs ConvNeXt', reference='moga', design='One recipe.')
    assert ('| top1 | - | +1.000 | +0.500 to +1.500 | +0.300 to +1.700 | 0.001 | 0.002 | decided, as declared (Holm '
            'over 2 claims) | 0.900 | - |') in text
    assert '| middle | mean-abs | - | - | - | - | - | not computed | - | - |' in text and 'nan' not in text
    assert '- training seeds and the test images: top1' in text and '- `top1`: between +0.300 and +1.700.' in text
    # the trainings' configs: what they differ in besides the seed, and which model's came from elsewhere
    configs = pd.DataFrame([{'optim.lr': 2e-3, 'model.gating': m == 'moga', 'trainer.seed': s, 'model.extra': '{}',
                             'trainer.run_dir': f'{{out}}/fit-{m}-s{s}', 'model': m, 'seed': s}
                            for m in ('moga', 'conv') for s in (0, 1, 2)])
    configs.to_csv(folder / 'configs.csv', index=False)
    text = seed_study_report(str(folder), 'MogaNet vs ConvNeXt', reference='moga')
    assert 'of the 6 trainings published here. Apart from the seed, they differ only in `model.gating`.' in text
    assert '| moga | True |' in text and '| conv | False |' in text
    configs[configs.model == 'conv'].to_csv(folder / 'configs.csv', index=False)
    text = seed_study_report(str(folder), 'MogaNet vs ConvNeXt', reference='moga')
    assert ('Apart from the seed, they are the same. The moga model came from another published study: its commands '
            'are in `units.csv`.') in text
    configs.drop(columns='model').to_csv(folder / 'configs.csv', index=False)   # a study of one model: no model column
    text = seed_study_report(str(folder), 'MogaNet vs ConvNeXt', reference='moga')
    assert 'of the 6 trainings published here. Apart from the seed, they differ only in `model.gating`.\n' in text


def test_a_report_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match='interaction_seeds.csv: not there; publish the study first'):
        seed_study_report(str(tmp_path), 't', reference='moga')
    _published(tmp_path / 's', seeds=(0, 1))
    with pytest.raises(ValueError, match="reference 'swin' is not in .*; accepted: moga, conv"):
        seed_study_report(str(tmp_path / 's'), 't', reference='swin')
