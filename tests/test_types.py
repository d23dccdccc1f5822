"""The package type-checks clean (mypy, configured in setup.cfg): a change that breaks a signature fails here."""
import pytest

from conftest import ROOT


@pytest.mark.slow
def test_moga_lab_type_checks_clean():
    from mypy import api
    out, err, status = api.run(['--config-file', str(ROOT / 'setup.cfg'), '--cache-dir', str(ROOT / '.mypy_cache'),
                                str(ROOT / 'moga_lab')])
    assert status == 0, out + err
    assert 'Success: no issues found' in out
