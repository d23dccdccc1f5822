"""The benchmark scripts run and print their tables (smoke tests at tiny settings: nothing here is timed or compared
against a speed; the numbers they print are measurements, not test results)."""
import re

from conftest import run_script


def test_peers_prints_rates_and_limits(tmp_path):
    done = run_script('benchmarks/peers.py', ['--pairs', 'xt', '--batch-sizes', '1', '--rounds', '1', '--repeats', '1'],
                      tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert re.search(r'\| moganet_xtiny \(76\.5\) vs convnext_atto \(75\.7\) \| \d+ vs \d+ = \d\.\d\dx', out), out
    # the limits: MACs per image as the papers count them, and both ceilings for the pair
    assert re.search(r'\| moganet_xtiny +\| +0\.786 \|', out) and re.search(r'\| convnext_atto +\| +0\.552 \|', out), out
    assert re.search(r'moganet_xtiny vs convnext_atto +\| \d\.\d\dx now, <= \d+\.\d\dx', out), out
    assert re.search(r'% of peak: moganet_xtiny now / convnext_atto now / moganet_xtiny needed for 1\.0x +\| \d+ / \d+ / \d+ %',
                     out), out


def test_study_speed_prints_every_model(tmp_path):
    done = run_script('benchmarks/study_speed.py', ['--sizes', '28', '--batch-size', '4', '--rounds', '1',
                                                    '--repeats', '1'], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ('moganet_xtiny', 'convnext_atto', 'swin_femto'):
        # pandas pads numbers to align their decimal points ('105   |' next to '203.8 |'): allow any spacing
        assert re.search(rf'\|\s+28 \| {name}\s+\|\s+[\d.]+\s+\| \d\.\d\dx\s+\|\s+[\d.]+\s+\| \d\.\d\dx', done.stdout), done.stdout
