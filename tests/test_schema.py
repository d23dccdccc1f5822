"""One validator for every schema the package reads: the run config, a study file and a claims registry report a bad
key or value in the same words (moga_lab.utils.schema)."""
import pytest

from moga_lab.studies.registry import load_registry
from moga_lab.studies.spec import StudyError, load_study
from moga_lab.training.config import ConfigError, RunConfig
from moga_lab.utils.schema import check_choice, check_mapping


def test_check_mapping_and_check_choice_name_the_bad_value_and_what_is_accepted():
    assert check_mapping({'a': 1}, 'f', ('a', 'b')) == {'a': 1}
    with pytest.raises(ValueError, match=r"^f: unknown keys \['c'\]; accepted: a, b$"):
        check_mapping({'a': 1, 'c': 2}, 'f', ('b', 'a'))
    with pytest.raises(ValueError, match=r'^f: missing b; required: a, b$'):
        check_mapping({'a': 1}, 'f', ('a', 'b'), required=('a', 'b'))
    with pytest.raises(ConfigError, match=r'^f: a list; accepted: a mapping with keys a$'):
        check_mapping([1], 'f', ('a',), error=ConfigError)
    assert check_choice('x', 'f', 'k', ('x', 'y')) == 'x'
    with pytest.raises(ValueError, match=r"^f: k 'z' is not accepted; accepted: x, y$"):
        check_choice('z', 'f', 'k', ('x', 'y'))
    with pytest.raises(ValueError, match=r'^f: k missing; accepted: x, y$'):
        check_choice('', 'f', 'k', ('x', 'y'))


def test_config_study_and_registry_report_an_unknown_key_alike(tmp_path):
    with pytest.raises(ConfigError, match=r"config section 'model': unknown keys \['colour'\]; accepted: .*gating"):
        RunConfig.from_dict({'model': {'colour': 'red'}})
    with pytest.raises(ConfigError, match=r"config: unknown keys \['colour'\]; accepted: data, model, optim, trainer"):
        RunConfig.from_dict({'colour': {}})
    study = tmp_path / 's.yaml'
    study.write_text('units: [{name: a, command: x, colour: red}]\n')
    with pytest.raises(StudyError, match=r"unit 1: unknown keys \['colour'\]; accepted: .*command"):
        load_study(str(study))
    registry = tmp_path / 'r.yaml'
    registry.write_text('family: f\nclaims: [{id: c, test: top1}]\ncolour: red\n')
    with pytest.raises(ValueError, match=r"r.yaml: unknown keys \['colour'\]; accepted: alpha, claims, correction, family"):
        load_registry(str(registry))
    registry.write_text('family: f\n')
    with pytest.raises(ValueError, match=r'r.yaml: missing claims; required: family, claims'):
        load_registry(str(registry))
