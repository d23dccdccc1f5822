"""GPU paths (marked ``cuda``; skipped without a GPU): bf16-mixed training, the image game under bf16 autocast,
Grad-CAM and the fused inference model. ``benchmarks/gpu_check.sh`` runs them with a throughput table."""
import pytest
import timm
import torch
import yaml

import moga_lab  # noqa: F401  (registers moganet_*)

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')]


def _classifier(seed=0):
    torch.manual_seed(seed)
    return timm.create_model('moganet_xtiny', num_classes=10, in_chans=1, stem_stride=2).cuda().eval()


def test_bf16_mixed_training_step(tmp_path):
    from moga_lab.cli import fit as fit_cli
    assert fit_cli.main(['--variant', 'xtiny', '--data', 'synthetic', '--batch-size', '16', '--no-progress',
                         '--epochs', '1', '--limit-train-batches', '3', '--accelerator', 'gpu', '--devices', '1',
                         '--precision', 'bf16-mixed', '--run-dir', str(tmp_path / 'r')]) == 0
    results = yaml.safe_load((tmp_path / 'r' / 'results.yaml').read_text())
    assert results['global_step'] == 3 and 0 <= results['test/acc1'] <= 1


def test_image_game_under_bf16_autocast_agrees_with_fp32():
    from moga_lab.analysis.curves import strength_curve
    from moga_lab.analysis.estimate import InteractionSettings, interaction_strength
    model = _classifier()
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0)).cuda()
    y = torch.tensor([1, 2]).cuda()
    rows = {}
    for bf16 in (False, True):
        s = InteractionSettings(grid=7, num_pairs=6, num_contexts=8, seed=0, bf16=bf16)
        rows[bf16] = strength_curve(interaction_strength(model, x, y, s))
    fp32, bf16 = (rows[k].set_index('ratio')['J'].to_numpy() for k in (False, True))
    assert fp32.shape == bf16.shape and abs(fp32 - bf16).max() <= 0.1 * abs(fp32).max() + 1e-6


def test_grad_cam_on_gpu_equals_cpu():
    from moga_lab.analysis.gradcam import grad_cam
    model = _classifier()
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2])
    on_gpu = grad_cam(model, x.cuda(), y.cuda()).cpu()
    on_cpu = grad_cam(model.cpu(), x, y)
    assert on_gpu.shape == (3, 28, 28) and torch.allclose(on_gpu, on_cpu, atol=1e-3)


def test_for_inference_equals_eager_on_gpu():
    model = timm.create_model('moganet_tiny').cuda().eval()
    x = torch.randn(4, 3, 224, 224, device='cuda')
    with torch.no_grad():
        eager, fused = model(x), model.for_inference()(x)
    assert torch.allclose(eager, fused, atol=1e-3, rtol=1e-3)
