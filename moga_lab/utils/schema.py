"""The one check of every schema the package reads: a run config's sections, a study file, a claims registry.

Each reader checks its own meaning (a claim's test, a unit's command); the shape (a mapping, its keys, a value among
the accepted ones) is checked here, so that a bad key or value is reported the same way wherever it is written:
``WHERE: unknown keys ['x']; accepted: a, b`` and ``WHERE: NAME 'v' is not accepted; accepted: a, b``.
"""
from typing import Any, Collection, Mapping, Sequence, Type

__all__ = ['check_mapping', 'check_choice']


def check_mapping(value: Any, where: str, accepted: Collection[str], required: Sequence[str] = (),
                  error: Type[Exception] = ValueError) -> Mapping[str, Any]:
    """``value`` if it is a mapping with only ``accepted`` keys and every ``required`` one (given and not empty).

    Args:
        value: the mapping read from YAML.
        where: the place named in the message (a file, a section, a unit).
        accepted: the keys the schema knows.
        required: the keys that must be there.
        error: the reader's exception class (a ValueError subclass: reported in one line by the CLIs).

    Raises:
        error: naming the unknown or missing keys and the accepted ones.
    """
    listed = ', '.join(sorted(accepted))
    if not isinstance(value, Mapping):
        raise error(f'{where}: a {type(value).__name__}; accepted: a mapping with keys {listed}')
    unknown = sorted(set(value) - set(accepted), key=str)
    if unknown:
        raise error(f'{where}: unknown keys {unknown}; accepted: {listed}')
    missing = [k for k in required if value.get(k) in (None, '', [], {})]
    if missing:
        raise error(f'{where}: missing {", ".join(missing)}; required: {", ".join(required)}')
    return value


def check_choice(value: Any, where: str, name: str, accepted: Sequence[Any],
                 error: Type[Exception] = ValueError) -> Any:
    """``value`` if it is one of ``accepted``.

    Args:
        value: the value read.
        where: the place named in the message.
        name: the key the value was read from.
        accepted: the values the schema knows.
        error: the reader's exception class.

    Raises:
        error: naming the value (or that it is missing) and the accepted ones.
    """
    if value not in accepted:
        shown = 'missing' if value in ('', None) else f'{value!r} is not accepted'
        raise error(f'{where}: {name} {shown}; accepted: {", ".join(str(a) for a in accepted)}')
    return value
