"""The inference fusion computes the same function (1e-4 absolute, fp32) as the model and the reference."""
import copy
import pickle
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from moga_lab.models import FusedMogaNet, MogaNet
from moga_lab.models.fuse import onednn_bf16

FIXTURES = Path(__file__).resolve().parents[2] / 'shared' / 'fixtures' / 'reference-moganet'
STAGE1 = Path(__file__).resolve().parent / 'data' / 'reference_xtiny_stage1.pt'  # vendored slice, any clone


@pytest.mark.skipif(not FIXTURES.is_dir(), reason='shared/fixtures not beside the checkout')
@pytest.mark.parametrize('name', ['xtiny_seed0_64px.pt', 'xtiny_seed1_64px_force_fp32.pt'])
def test_fused_matches_reference_fixture(name):
    fx = torch.load(FIXTURES / name, map_location='cpu', weights_only=False)
    model = MogaNet('xtiny', num_classes=10, attn_force_fp32=fx['attn_force_fp32'])
    model.load_state_dict(fx['state_dict'])
    fused = model.eval().for_inference()
    with torch.no_grad():
        torch.testing.assert_close(fused(fx['input']), fx['logits'], atol=1e-4, rtol=0)
        feats = fused.forward_intermediates(fx['input'], intermediates_only=True)
        for ours, ref in zip(feats, fx['features']):
            torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize('name', ['xtiny_seed0_64px', 'xtiny_seed1_64px_force_fp32'])
def test_fused_stage1_matches_vendored_reference_slice(name):
    fx = torch.load(STAGE1, weights_only=True)[name]
    model = MogaNet('xtiny', num_classes=10, attn_force_fp32=fx['attn_force_fp32'])
    model.load_state_dict(fx['state_dict'], strict=False)  # stages 2-4 random (see test_models)
    fused = model.eval().for_inference()
    with torch.no_grad():
        (feat,) = fused.forward_intermediates(fx['input'], indices=[0], intermediates_only=True)
    torch.testing.assert_close(feat, fx['stage1_features'], atol=1e-4, rtol=0)


@pytest.mark.parametrize('options', [dict(), dict(gating=False), dict(feat_decompose=False),
                                     dict(channel_aggregation=False), dict(channel_split=(1, 0, 0)),
                                     dict(gate_act='sigmoid'), dict(stem_stride=2)], ids=str)
def test_fused_equals_unfused_with_every_branch_active(options):
    torch.manual_seed(0)
    model = MogaNet('xtiny', num_classes=10, **options).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():  # scales start at 1e-5: make every folded term matter
            if 'layer_scale' in n or 'sigma' in n:
                p.uniform_(-0.1, 0.1)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        x = torch.randn(2, 3, 64, 64)
        ref = model(x)
        fused = model.for_inference()
        torch.testing.assert_close(fused(x), ref, atol=1e-4, rtol=0)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = fused(x)
        assert (low.float() - ref).abs().max() < 5e-2 * ref.abs().max() + 1e-3
    assert ref.abs().max() > 1e-2  # not a vacuous comparison


def test_fused_model_refuses_training_and_keeps_the_original():
    model = MogaNet('xtiny', num_classes=10).train()
    fused = model.fuse()
    assert model.training  # the original is left as it was
    assert type(fused) is FusedMogaNet and isinstance(fused, MogaNet) and not fused.training
    assert fused.arch == model.arch and fused.feature_info == model.feature_info and fused.for_inference() is fused
    with pytest.raises(RuntimeError, match='for inference only'):
        fused.train()
    with pytest.raises(TypeError, match='takes a MogaNet; got Sequential'):
        FusedMogaNet(torch.nn.Sequential())
    # a copy and a pickled copy compute the same logits (the weight-cast caches start empty)
    state = torch.get_rng_state()
    model.fuse()
    assert torch.equal(torch.get_rng_state(), state)  # fusing draws no random numbers: a seeded script stays seeded
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = fused(x)
        for other in (copy.deepcopy(fused), pickle.loads(pickle.dumps(fused))):
            assert type(other) is FusedMogaNet and torch.equal(other(x), ref)
    assert isinstance(model.blocks1[0], torch.nn.Module) and type(model.blocks1[0]).__name__ == 'MogaBlock'
    assert type(fused.blocks1[0]).__name__ == 'FusedMogaBlock'


@pytest.mark.skipif(not FIXTURES.is_dir(), reason='shared/fixtures not beside the checkout')
@pytest.mark.skipif(shutil.which('g++') is None, reason='torch.compile (inductor) needs a C++ compiler')
def test_compiled_inference_model_matches_reference_fixture():
    """for_inference(compile=True): inductor with frozen weights computes the reference's logits (1e-4)."""
    fx = torch.load(FIXTURES / 'xtiny_seed0_64px.pt', map_location='cpu', weights_only=False)
    model = MogaNet('xtiny', num_classes=10)
    model.load_state_dict(fx['state_dict'])
    fast = model.eval().for_inference(compile=True)
    with torch.inference_mode():
        torch.testing.assert_close(fast(fx['input']), fx['logits'], atol=1e-4, rtol=0)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason='PyTorch built without oneDNN')
@pytest.mark.parametrize('options', [dict(), dict(gating=False, channel_aggregation=False), dict(gate_act='gelu')],
                         ids=str)
def test_onednn_post_op_path_equals_plain_ops(monkeypatch, options):
    from moga_lab.models import fuse
    torch.manual_seed(1)
    model = MogaNet('xtiny', num_classes=10, **options).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if 'layer_scale' in n or 'sigma' in n:
                p.uniform_(-0.1, 0.1)
    fused, x = model.for_inference(), torch.randn(2, 3, 64, 64)
    calls = []
    real = fuse._conv_act
    monkeypatch.setattr(fuse, '_conv_act', lambda *a, **k: calls.append(a[4]) or real(*a, **k))
    with torch.no_grad():
        fast = fused(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            fast16 = fused(x)
        # both precisions took the post-op path (bfloat16 where oneDNN has it on this CPU: else the plain ops)
        assert set(calls) == ({torch.float32, torch.bfloat16} if fuse.onednn_bf16() else {torch.float32})
        calls.clear()
        with fuse.onednn_post_ops(False):
            plain = fused(x)
            with torch.autocast('cpu', dtype=torch.bfloat16):
                plain16 = fused(x)
        assert not calls
        assert fuse._POST_OPS['enabled']  # restored
    # with gradients on (e.g. Grad-CAM through a fused model) the plain ops run and backward works
    xg = x.clone().requires_grad_()
    fused(xg).sum().backward()
    assert not calls and xg.grad.abs().sum() > 0
    torch.testing.assert_close(fast, plain, atol=1e-4, rtol=0)
    assert (fast16.float() - plain16.float()).abs().max() < 2e-2 * plain.abs().max()
    assert plain.abs().max() > 1e-2


def test_onednn_bf16_follows_the_cpu_flags_and_without_it_bf16_takes_the_plain_ops(monkeypatch):
    """oneDNN's bfloat16 convolutions need AVX-512 BW/VL/DQ or AVX-NE-CONVERT (else they raise a RuntimeError deep in
    the model, as on the AVX2-only AMD EPYC): without them the fused blocks compute bfloat16 autocast with the plain
    ops, and give the logits of the unfused model under autocast."""
    from moga_lab.models import fuse
    flags = set()
    if Path('/proc/cpuinfo').is_file():
        flags = {f for line in Path('/proc/cpuinfo').read_text().splitlines() if line.startswith('flags')
                 for f in line.split(':', 1)[1].split()}
        assert onednn_bf16() == ({'avx512bw', 'avx512vl', 'avx512dq'} <= flags or 'avx_ne_convert' in flags)
    monkeypatch.setitem(fuse._BF16, 'ok', False)  # as on a CPU without it
    torch.manual_seed(3)
    model = MogaNet('xtiny', num_classes=10).eval()
    fused, x = model.for_inference(), torch.randn(2, 3, 64, 64)
    calls = []
    real = fuse._conv_act
    monkeypatch.setattr(fuse, '_conv_act', lambda *a, **k: calls.append(a[4]) or real(*a, **k))
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        low, ref = fused(x), model(x)
    assert not calls and low.dtype == ref.dtype
    assert (low.float() - ref.float()).abs().max() < 2e-2 * ref.float().abs().max() + 1e-3


@pytest.mark.skipif(not onednn_bf16(), reason="this CPU has no oneDNN bfloat16 (AVX-512 BW/VL/DQ or AVX-NE-CONVERT): "
                    'the post-op path, whose casts this counts, does not run under bfloat16 here')
def test_bf16_weights_cast_once_same_logits_and_a_changed_weight_is_seen(monkeypatch):
    """Under CPU autocast the fused model casts each convolution / linear weight to bfloat16 once and reuses it:
    logits bit-identical to casting on every call, a quarter of the aten.to calls, and a weight changed in place
    (or given new data) afterwards is cast again."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from moga_lab.models import casts
    torch.manual_seed(2)
    fused = MogaNet('xtiny', num_classes=10).eval().for_inference()
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)

    class CountCasts(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            CountCasts.n += str(func) in ('aten.to.dtype', 'aten._to_copy.default')
            return func(*args, **(kwargs or {}))

    def run():
        with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
            fused(x)  # (fills the cache)
            CountCasts.n = 0
            with CountCasts():
                out = fused(x)
        return out, CountCasts.n
    cached, n_cached = run()
    assert len(fused.blocks1[0].casts) > 0 and len(fused.head.casts) == 2  # each module keeps its own copies
    assert all(len(m.casts) == 0 for m in copy.deepcopy(fused).modules() if hasattr(m, 'casts'))  # copies start empty
    real = casts.CastCache.__call__
    monkeypatch.setattr(casts.CastCache, '__call__', lambda self, t, dtype: None if t is None else t.to(dtype))
    every_call, n_every = run()
    assert torch.equal(cached, every_call)
    assert n_cached < n_every / 3, (n_cached, n_every)
    monkeypatch.setattr(casts.CastCache, '__call__', real)
    run()
    with torch.no_grad():  # changed in place, then given new data: both seen
        fused.head.weight.mul_(2)
        fused.blocks1[0].w_fc1.add_(0.5)
        fused.patch_embed2.projection.weight.data = fused.patch_embed2.projection.weight.data * 1.5
    changed, _ = run()
    monkeypatch.setattr(casts.CastCache, '__call__', lambda self, t, dtype: None if t is None else t.to(dtype))
    expected, _ = run()
    assert torch.equal(changed, expected) and not torch.equal(changed, cached)
    monkeypatch.setattr(casts.CastCache, '__call__', real)
    # copies made under inference_mode (as the interaction game runs) serve no_grad calls too; with gradients on
    # (Grad-CAM) the weights are cast per call and backward works
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):
        in_inference = fused(x)
    again, _ = run()
    xg = x.clone().requires_grad_()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        with_grad = fused(xg)
    with_grad.float().sum().backward()
    assert torch.equal(in_inference, expected) and torch.equal(again, expected)
    assert torch.equal(with_grad.detach(), expected) and xg.grad.abs().sum() > 0


def test_fused_model_compiles_without_graph_breaks():
    """Under torch.compile the fused blocks take the plain ops; any graph break would split the model into one
    frame per block and exhaust dynamo's recompile limit when several models are compiled in one process."""
    fused = MogaNet('xtiny', num_classes=10).eval().for_inference()
    x = torch.randn(1, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        explained = torch._dynamo.explain(fused)(x)
    torch._dynamo.reset()
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


def _scaled_xtiny(seed):
    torch.manual_seed(seed)
    model = MogaNet('xtiny', num_classes=10).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if 'layer_scale' in n or 'sigma' in n:
                p.uniform_(-0.1, 0.1)
    return model


class _WrongOp:
    """A private op that still exists but computes something else (as a torch release could change it)."""
    def __call__(self, x, weight, bias, *args):
        return torch.zeros(x.shape[0], weight.shape[0], *x.shape[2:], dtype=x.dtype)

    def binary(self, x, other, weight, *args):
        return other


@pytest.mark.parametrize('op', ['missing', 'wrong'])
def test_without_a_working_onednn_op_the_fused_model_takes_the_plain_ops(monkeypatch, op):
    """The post-op path is checked before use: where torch has no ``mkldnn._convolution_pointwise`` or it computes
    something else, the fused model runs the plain ops (warning when the op exists but fails) and equals the eager."""
    from moga_lab.models import fuse
    monkeypatch.setattr(fuse, '_SUPPORTED', {})
    monkeypatch.setattr(fuse, '_pointwise_op', (lambda: None) if op == 'missing' else (lambda: _WrongOp()))
    model = _scaled_xtiny(4)
    fused, x = model.for_inference(), torch.randn(2, 3, 64, 64)
    calls = []
    real = fuse._conv_act
    monkeypatch.setattr(fuse, '_conv_act', lambda *a, **k: calls.append(a[4]) or real(*a, **k))
    with warnings.catch_warnings(record=True) as seen, torch.no_grad():
        warnings.simplefilter('always')
        torch.testing.assert_close(fused(x), model(x), atol=1e-4, rtol=0)
        fused(x)
    messages = [str(w.message) for w in seen if 'post-ops' in str(w.message)]
    assert not calls and fuse._SUPPORTED[torch.float32] is False
    assert len(messages) == (0 if op == 'missing' else 1)  # asked once per process, not per call
    assert op == 'missing' or 'failed its check' in messages[0] and 'same function, slower' in messages[0]


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason='PyTorch built without oneDNN')
def test_the_onednn_check_passes_with_this_torch():
    """With the pinned torch the private op exists and computes the plain ops' values (else the fast path would be
    silently lost: the benchmark would show it, this test says why)."""
    from moga_lab.models import fuse
    fuse._SUPPORTED.clear()
    assert fuse.onednn_post_ops_supported(torch.float32)
    assert fuse.onednn_post_ops_supported(torch.bfloat16) == fuse.onednn_bf16()
