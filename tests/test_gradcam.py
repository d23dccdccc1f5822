"""Grad-CAM: shapes and ranges for the three families, a region sanity check, a weight-randomisation check."""
import pytest
import timm
import torch
import torch.nn as nn

from moga_lab.analysis.gradcam import default_layer, grad_cam, mass_inside
from moga_lab.training import ModelConfig, build_model


@pytest.mark.parametrize('name', ['moganet_xtiny', 'convnext_atto', 'swin_femto'])
def test_maps_shape_and_range(name):
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name), num_classes=10, in_chans=1, image_size=28).eval()
    images = torch.randn(3, 1, 28, 28)
    maps = grad_cam(model, images)
    assert maps.shape == (3, 28, 28)
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6
    assert not model.training
    # targets given explicitly: the map changes with the class explained
    other = grad_cam(model, images, targets=torch.tensor([1, 2, 3]))
    assert other.shape == (3, 28, 28)


def test_swin_layer_is_read_as_nchw():
    """The hooked Swin output must be [B, C, h, w]: the maps vary over both spatial axes like the input does."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name='swin_femto'), num_classes=4, in_chans=1, image_size=28).eval()
    seen = {}
    layer = default_layer(model)
    from moga_lab.analysis import gradcam as gc
    with gc._nchw_view(model, layer) as hooked:
        handle = hooked.register_forward_hook(lambda m, i, o: seen.update(shape=tuple(o.shape)))
        model(torch.randn(2, 1, 28, 28))
        handle.remove()
    assert seen['shape'][1] == model.num_features  # channels in dim 1
    assert type(model.layers[-1]).__name__ != 'Sequential'  # the model is restored afterwards
    # an earlier stage (a finer map at small inputs) is read as NCHW too: 28 px, patch 2 -> layers.2 is 4x4
    stage = model.layers[2]
    with gc._nchw_view(model, stage) as hooked:
        handle = hooked.register_forward_hook(lambda m, i, o: seen.update(shape=tuple(o.shape)))
        model(torch.randn(2, 1, 28, 28))
        handle.remove()
    assert seen['shape'] == (2, model.layers[2].blocks[0].norm1.normalized_shape[0], 4, 4)
    assert model.layers[2] is stage
    assert grad_cam(model, torch.randn(2, 1, 28, 28), layer=stage).shape == (2, 28, 28)


def test_unknown_model_asks_for_a_layer():
    with pytest.raises(ValueError, match='no default layer for Sequential; pass layer='):
        grad_cam(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()), torch.randn(1, 1, 8, 8))


class RegionOnly(nn.Module):
    """Only the top-left 8x8 region of a 32x32 image can influence the output."""

    def __init__(self):
        super().__init__()
        mask = torch.zeros(1, 1, 32, 32)
        mask[..., :8, :8] = 1
        self.register_buffer('mask', mask)
        self.features = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        a = torch.relu(self.features(x * self.mask))
        return self.head(a.mean((2, 3)))


def test_map_concentrates_on_the_only_region_that_matters():
    torch.manual_seed(0)
    model = RegionOnly()
    maps = grad_cam(model, torch.rand(4, 1, 32, 32), layer=model.features)
    inside = maps[:, :9, :9].sum((1, 2))  # the region plus the conv's one-pixel border
    total = maps.sum((1, 2))
    assert (total > 0).all()
    assert (inside / total).min() > 0.9


def test_maps_of_a_trained_model_differ_from_randomised_weights():
    """Adebayo et al. (2018): a saliency method must depend on the learned weights."""
    from moga_lab.data import SyntheticDataModule
    torch.manual_seed(0)
    dm = SyntheticDataModule(num_classes=4, image_size=28, train_size=512, batch_size=32, noise=0.3)
    dm.setup()
    model = build_model(ModelConfig(name='moganet_xtiny', drop_path_rate=0.0), 4, 1, 28)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(2):
        for x, y in dm.train_dataloader():
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    x, y = next(iter(dm.test_dataloader()))
    x, y = x[:16], y[:16]
    model.eval()
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() > 0.5  # it learned something
    trained = grad_cam(model, x, y)
    random = build_model(ModelConfig(name='moganet_xtiny'), 4, 1, 28).eval()  # fresh random weights
    randomised = grad_cam(random, x, y)
    a = trained.flatten(1) - trained.flatten(1).mean(1, keepdim=True)
    b = randomised.flatten(1) - randomised.flatten(1).mean(1, keepdim=True)
    corr = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
    assert corr.mean() < 0.5, corr


def test_mass_inside_closed_forms():
    masks = torch.zeros(4, 8, 8, dtype=torch.bool)
    masks[:, 2:6, 2:6] = True                                 # the object: 16 of 64 pixels
    maps = torch.zeros(4, 8, 8)
    maps[0, 3:5, 3:5] = 1.0                                   # all on the object
    maps[1] = 0.5                                             # spread evenly: the object's area share
    maps[2, 0, :] = 1.0                                       # all on the background
    share = mass_inside(maps, masks)                          # maps[3]: all zero, no mass to place
    assert share[:3].tolist() == [1.0, 0.25, 0.0] and torch.isnan(share[3])
    with pytest.raises(ValueError, match='non-negative'):
        mass_inside(-maps - 1, masks)
    with pytest.raises(ValueError, match=r'\[B, H, W\]'):
        mass_inside(maps, masks[:, :4])


def test_explained_layer_is_the_deepest_stage_with_a_map_of_at_least_4x4():
    """One rule for every family (used by grad_cam's default, moga-gradcam and the comparison)."""
    from moga_lab.analysis.gradcam import explained_layer
    small = [('moganet_xtiny', 'norm3'), ('convnext_atto', 'stages.2')]
    from moga_lab.models import create_classifier
    for name, expected in small:
        model = create_classifier(name, num_classes=10, in_chans=1, image_size=28)   # the small-image stems
        assert explained_layer(model.eval(), torch.zeros(1, 1, 28, 28))[0] == expected
    big = timm.create_model('moganet_xtiny').eval()
    name, layer, size = explained_layer(big, torch.zeros(1, 3, 224, 224))
    assert (name, size) == ('norm4', '7x7') and layer is big.norm4


@pytest.mark.parametrize('args, message', [
    (['--garment-threshold', '1.5'], "argument --garment-threshold: '1.5' is not accepted; accepted: a number in (0, 1)"),
    (['--garment-threshold', '0'], "argument --garment-threshold: '0' is not accepted; accepted: a number in (0, 1)"),
    (['--plot-images', '0'], "argument --plot-images: '0' is not accepted; accepted: an integer >= 1"),
    (['--num-images', '-2'], "argument --num-images: '-2' is not accepted; accepted: an integer >= 1"),
])
def test_gradcam_command_names_a_bad_value(args, message, capsys):
    from moga_lab.cli import gradcam as gradcam_cli
    with pytest.raises(SystemExit) as stop:
        gradcam_cli.build_parser().parse_args(['--checkpoint', 'a.ckpt', '--out', 'o'] + args)
    assert stop.value.code == 2 and message in capsys.readouterr().err
