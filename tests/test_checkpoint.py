"""Loading weights from local files in the wrappings people actually have."""
import pytest
import timm
import torch

import moga_lab  # noqa: F401
from moga_lab.models import CheckpointMismatchError, MogaNet, load_checkpoint, read_state_dict


@pytest.fixture(scope='module')
def source():
    torch.manual_seed(0)
    return MogaNet('xtiny', num_classes=10).eval()


def _same(a, b):
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        return torch.allclose(a.eval()(x), b.eval()(x))


@pytest.mark.parametrize('wrap', [
    lambda sd: sd,
    lambda sd: {'state_dict': sd, 'epoch': 3},
    lambda sd: {'model': sd, 'optimizer': {}},
    lambda sd: {'state_dict': {f'module.{k}': v for k, v in sd.items()}},
    lambda sd: {'state_dict': {f'model.{k}': v for k, v in sd.items()}, 'hyper_parameters': {'lr': 1e-3}},
    lambda sd: {f'_orig_mod.{k}': v for k, v in sd.items()},
], ids=['plain', 'state_dict', 'model', 'ddp-module', 'lightning', 'compiled'])
def test_wrappings_load(source, tmp_path, wrap):
    path = tmp_path / 'ckpt.pth.tar'
    torch.save(wrap(source.state_dict()), path)
    target = MogaNet('xtiny', num_classes=10)
    report = load_checkpoint(target, path)
    assert not (report.missing or report.unexpected or report.mis_shaped)
    assert _same(source, target)


def test_other_classifier_size_keeps_the_backbone(source, tmp_path):
    path = tmp_path / 'ckpt.pth'
    torch.save({'state_dict': source.state_dict()}, path)
    target = MogaNet('xtiny', num_classes=3)
    with pytest.warns(UserWarning, match='classifier of another size'):
        report = load_checkpoint(target, path)
    assert report.dropped_classifier == ['head.weight', 'head.bias']
    torch.testing.assert_close(target.blocks3[0].attn.proj_1.weight, source.blocks3[0].attn.proj_1.weight)
    assert target.head.weight.shape == (3, 192)


def test_headless_backbone_loads(source, tmp_path):
    path = tmp_path / 'ckpt.pth'
    torch.save(source.state_dict(), path)
    target = MogaNet('xtiny', num_classes=0)
    with pytest.warns(UserWarning):
        load_checkpoint(target, path)
    with torch.no_grad():
        x = torch.randn(1, 3, 32, 32)
        torch.testing.assert_close(target.eval()(x), source.forward_head(source.forward_features(x), pre_logits=True))


def test_through_timm_pretrained_cfg_overlay(source, tmp_path):
    path = tmp_path / 'ckpt.pth.tar'
    torch.save({'state_dict': source.state_dict()}, path)
    model = timm.create_model('moganet_xtiny', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                              num_classes=10)
    # timm drops the classifier when num_classes differs from the cfg's 1000: compare the backbones
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval().forward_features(x), source.forward_features(x))


def test_mismatch_lists_keys(source, tmp_path):
    path = tmp_path / 'ckpt.pth'
    torch.save(source.state_dict(), path)
    target = MogaNet('tiny', num_classes=10)
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint(target, path)
    message = str(info.value)
    assert 'ckpt.pth' in message and 'does not fit MogaNet' in message
    assert 'missing from the checkpoint' in message and 'blocks3.10.' in message
    assert 'mis-shaped' in message and 'blocks3.0.norm1.weight checkpoint (96,) vs model (128,)' in message


def test_unexpected_keys_are_listed(source):
    sd = dict(source.state_dict())
    sd['extra.weight'] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match=r'unexpected in the checkpoint \(1\): extra.weight'):
        load_checkpoint(MogaNet('xtiny', num_classes=10), sd)
    report = load_checkpoint(MogaNet('xtiny', num_classes=10), sd, strict=False)
    assert report.unexpected == ['extra.weight']


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothing is downloaded'):
        read_state_dict(tmp_path / 'nope.pth')
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointMismatchError, match='cannot read checkpoint'):
        read_state_dict(bad)
