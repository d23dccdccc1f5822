"""The benchmark scripts run and print their tables (smoke tests at tiny settings: nothing here is timed or compared
against a speed; the numbers they print are measurements, not test results)."""
import re

import pytest
import torch

from conftest import load_script, run_script

pytestmark = pytest.mark.slow  # trains, or runs commands end to end: `make test-fast` leaves it out


def test_peers_prints_rates_and_limits(tmp_path):
    done = run_script('benchmarks/peers.py', ['--pairs', 'xt', '--batch-sizes', '1', '--rounds', '1', '--repeats', '1',
                                              '--breakdown'], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert re.search(r'\| moganet_xtiny \(76\.5\) vs convnext_atto \(75\.7\) \| \d+ vs \d+ = \d\.\d\dx', out), out
    # the limits: MACs per image as the papers count them, and both ceilings for the pair
    assert re.search(r'\| moganet_xtiny +\| +0\.782 \|', out) and re.search(r'\| convnext_atto +\| +0\.547 \|', out), out
    assert re.search(r'moganet_xtiny vs convnext_atto +\| \d\.\d\dx now, <= \d+\.\d\dx', out), out
    assert re.search(r'% of peak: moganet_xtiny now / convnext_atto now / moganet_xtiny needed for 1\.0x +\| \d+ / \d+ / \d+ %',
                     out), out
    # the roofline: bytes per image, ceiling and share per model, then the pair against it
    assert re.search(r'\| moganet_xtiny +\| \d+ MB, <= \d+/s, now \d+ % +\|', out), out
    assert re.search(r'\| moganet_xtiny vs convnext_atto +\| \d\.\d\dx now, <= \d+\.\d\dx; both at their ceilings \d+\.\d\dx',
                     out), out
    # --breakdown: per operator kind, measured inside the model against its roofline (MogaNet's depth-wise convs named)
    assert re.search(r'\| moganet_xtiny +\| batch 1 fp32 +\| [^|]*\(depth-wise \d+x\d+\) +\| +\d+ +\| +[\d.]+ +\| +\d+ % +\| '
                     r'+[\d.]+ +\| +[\d.]+ +\| +\d+ %', out), out
    # bf16 where the CPU has it natively; elsewhere it is left out, and said (emulated, it is ~100x slower)
    from moga_lab.models.fuse import onednn_bf16
    assert bool(re.search(r'\| convnext_atto +\| batch 1 bf16 +\|', out)) == onednn_bf16(), out
    assert ('bf16 columns left out: this CPU has no native bfloat16' in out) != onednn_bf16(), out
    # the kernel floor: every operator at its best alone, per model and column, then the pair against it
    assert re.search(r'\| moganet_xtiny +\| \d+ ms inside, \d+ ms alone: <= \d+/s, now \d+ % +\|', out), out
    assert re.search(r'\| moganet_xtiny vs convnext_atto +\| \d\.\d\dx now, <= \d+\.\d\dx; both at their kernel floors '
                     r'\d+\.\d\dx', out), out


def test_operators_timed_alone_get_fresh_inputs_when_they_write():
    """The kernel floor repeats each call alone; an in-place operator must not apply its repeats to the model's
    tensors (the forward pass it times would change), and every call is counted once with its best time."""
    peers = load_script('benchmarks/peers.py')

    class AddOne(torch.nn.Module):
        def forward(self, x):
            return x.add_(1).mul(3)
    x = torch.zeros(4, 4)
    times = peers.time_operators(AddOne(), x, alone=3)
    assert torch.equal(x, torch.full((4, 4), 2.0))   # the warm-up and the timed pass only, not the 2 x 3 repeats
    assert {k: v[0] for k, v in times.items()} == {'aten.add_.Tensor': 1, 'aten.mul.Tensor': 1}
    assert all(0 < alone <= inside for _, inside, alone in times.values())


def test_study_speed_prints_every_model(tmp_path):
    done = run_script('benchmarks/study_speed.py', ['--sizes', '28', '--batch-size', '4', '--rounds', '1',
                                                    '--repeats', '1'], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ('moganet_xtiny', 'convnext_atto', 'swin_femto'):
        # pandas pads numbers to align their decimal points ('105   |' next to '203.8 |'): allow any spacing
        assert re.search(rf'\|\s+28 \| {name}\s+\|\s+[\d.]+\s+\| \d\.\d\dx\s+\|\s+[\d.]+\s+\| \d\.\d\dx', done.stdout), done.stdout


def test_interaction_speed_at_the_studies_28_px(tmp_path):
    """The documented small-image use: every study model through the game at 28 px (the baselines need the
    small-image stems there; timm's own ConvNeXt stem cannot take 28 px)."""
    done = run_script('benchmarks/interaction_speed.py', ['--image-size', '28', '--grid', '7', '--models', 'moganet_xtiny',
                                                         'convnext_atto', 'swin_femto', '--batch-size', '8',
                                                         '--repeats', '1', '--fused-only', '--bf16-pairs', '0'], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for name, path in (('moganet_xtiny', 'fused'), ('convnext_atto', 'timm'), ('swin_femto', 'timm')):
        assert re.search(rf'\| {name}\s+\| {path}\s+\| fp32', done.stdout), done.stdout
        # bf16 rows only where the CPU has native bfloat16 (emulated they would take minutes), and the output says so
        from moga_lab.models.fuse import onednn_bf16
        assert bool(re.search(rf'\| {name}\s+\| {path}\s+\| bf16', done.stdout)) == onednn_bf16(), done.stdout
    assert ('bf16 rows left out: this CPU has no native bfloat16' in done.stdout) != onednn_bf16(), done.stdout
    bad = run_script('benchmarks/interaction_speed.py', ['--image-size', '28', '--models', 'convnext_foo'], tmp_path)
    assert bad.returncode == 2 and '--models convnext_foo: ' in bad.stderr and 'Traceback' not in bad.stderr, bad.stderr


@pytest.mark.parametrize('name', ['moganet_xtiny', 'convnext_atto', 'swin_tiny_patch4_window7_224'])
def test_operator_traffic_counts_the_papers_macs(name):
    """The roofline's per-operator MACs (from the shapes each ATen call sees: oneDNN's fused convolutions, matrix
    products, attention) add up to the MAC count of the unfused model within 1 %; bytes are at least the input
    image and the logits."""
    peers = load_script('benchmarks/peers.py')
    x = torch.randn(1, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    ops = peers.operator_traffic(peers.build(name), x)
    assert sum(m for _, _, m in ops) == pytest.approx(peers.macs(name), rel=0.01)
    assert sum(b for _, b, _ in ops) > x.numel() * 4 + 1000 * 4
    assert all(b == 0 for op, b, _ in ops if op.startswith(('aten.view', 'aten.permute', 'aten.reshape')))


def test_roofline_takes_the_slower_of_compute_and_memory_per_operator():
    peers = load_script('benchmarks/peers.py')
    curve = [(1, 100.0), (4, 50.0)]  # GB/s for working sets up to 1 MB and up to 4 MB (and beyond)
    mb = 2 ** 20
    rows = [('copy', mb, 0),                  # 1 MB at 100 GB/s
            ('big copy', 8 * mb, 0),          # beyond the curve: the largest size's 50 GB/s
            ('matmul', mb, 10 ** 9)]          # 1 GMAC at 10 GMAC/s (10 ms) beats its 10 us of memory
    expected = mb / 100e9 + 8 * mb / 50e9 + 10 ** 9 / 10e9
    assert peers.roofline_seconds(rows, 10.0, curve) == pytest.approx(expected)
    assert [mb for mb, _ in peers.bandwidth_curve((1, 4), repeats=1)] == [1, 4]


def test_design_cost_resumes_and_reports_every_design(tmp_path):
    """Two runs per design on the local game: the table has a row per design with its equal-precision ratio; a second
    call finds every run written and adds none; a budget below the smallest plan is named, not run."""
    out = tmp_path / 'cost'
    args = ['--games', 'local', '--runs', '2', '--designs', 'authors', 'realloc', 'shared/4', 'shared/1000', '--out', str(out)]
    done = run_script('benchmarks/design_cost.py', args, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    import pandas as pd
    runs = pd.read_csv(out / 'runs.csv')
    assert sorted(runs.design.unique()) == ['authors', 'realloc', 'shared/4'] and len(runs) == 6
    text = (out / 'design_cost.md').read_text()
    for design in ('authors', 'realloc', 'shared/4'):
        assert re.search(rf'\| local \| {design} \| 2 x 1 \| [\d,]+ \|', text), text
    assert 'local shared/1000: no plan reaches the request' in text, text
    again = run_script('benchmarks/design_cost.py', args, tmp_path)
    assert again.returncode == 0 and len(pd.read_csv(out / 'runs.csv')) == 6, again.stderr[-3000:]


def test_design_coverage_prints_a_row_per_game_and_design(tmp_path):
    done = run_script('benchmarks/design_coverage.py', ['--curves', '2', '--images', '3', '--out', str(tmp_path / 'c.md')],
                      tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    text = (tmp_path / 'c.md').read_text()
    for game in ('local', 'skewed'):
        for design in ('authors', 'shared/4'):
            assert re.search(rf'\| {game} \| {design} \| [\d,]+ \| \d+ / \d+ % \| \d+ % \| \d+ / \d+ % \|', text), text


def test_throughput_prints_every_row_and_the_fused_model_against_a_revision(tmp_path):
    done = run_script('benchmarks/throughput.py', ['--variants', 'xtiny', '--size', '32', '--batch-size', '1',
                                                   '--repeats', '1', '--no-compile', '--no-train'], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for mode in ('reference computation (fresh process)', 'reference computation, keep_freed_memory',
                 'inference fp32 fused (for_inference)', 'inference fp32 fused, plain ops (no oneDNN post-ops)'):
        assert re.search(rf'\| moganet_xtiny +\| [^|]*{re.escape(mode)} +\| +[\d.]+ \|', done.stdout), mode
    assert re.search(r'\| convnext_atto +\| inference fp32 channels_last', done.stdout), done.stdout
    # this tree's fused model against the one fuse.py built at a revision: equal first, then images/s and their ratio
    done = run_script('benchmarks/throughput.py', ['--fused-against', 'HEAD', '--variants', 'xtiny', '--size', '32',
                                                   '--batch-size', '1', '--repeats', '1', '--out', str(tmp_path / 'f.md')],
                      tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / 'f.md').read_text().strip() in done.stdout and 'measured side by side on' in done.stdout
    assert re.search(r'\| moganet_xtiny +\| fp32 +\| +1 +\| +32 +\| +[\d.]+ +\| +[\d.]+ +\| +[\d.]+ +\|', done.stdout), done.stdout


def test_planner_calibration_prints_expected_against_measured(tmp_path):
    measured = tmp_path / 'design_cost.csv'
    measured.write_text('target,design,sd_share_rms\nlocal,shared/4,0.08\nlocal,shared/10,0.1\n')
    done = run_script('benchmarks/planner_calibration.py', ['--games', 'local', '--measured', str(measured),
                                                            '--out', str(tmp_path / 'c.md')], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    text = (tmp_path / 'c.md').read_text()
    row = re.search(r'\| local +\| shared/4 +\| +(\d+) \| +([\d.]+) \| +([\d.]+) \| +([\d.]+) \| +([\d.]+) \| +0\.08 +\| +'
                    r'([\d.]+) \|', text)
    assert row, text
    expected, pairs_term, contexts_term = (float(row.group(k)) for k in (2, 3, 4))
    assert abs(expected ** 2 - pairs_term ** 2 - contexts_term ** 2) < 2e-3 * expected ** 2 + 1e-6  # the two terms
    assert abs(float(row.group(6)) - expected / 0.08) < 0.01
    noise_share = float(text.split('| local ', 2)[1].split('\n')[0].rstrip(' |').split('|')[-1])
    assert noise_share > 0  # the pilot's own noise in its pairs' term, measured (PilotComponents.pair_share_noise)
