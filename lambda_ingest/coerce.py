"""Configuration text to typed values, written once for the function's environment (settings.py) and the
stack's cdk context (infra/config.py).

Values arrive as text (an environment variable, `cdk -c key=value`) or as JSON types (cdk.json). A bad one
raises ConfigurationError whose message starts with `label`, the name the user wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lambda_ingest.errors import ConfigurationError

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})


def to_int(value: Any, label: str, lo: int | None = None, hi: int | None = None) -> int:
    """An integer within [lo, hi] (either bound optional); a JSON true/false is not one."""
    return int(_number(value, label, int, "an integer", lo, hi))


def to_float(value: Any, label: str, lo: float | None = None, hi: float | None = None) -> float:
    """A number within [lo, hi] (either bound optional)."""
    return _number(value, label, float, "a number", lo, hi)


def _number(
    value: Any, label: str, parse: Callable[[str], float], what: str, lo: float | None, hi: float | None
) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = parse(str(value).strip())
    except ValueError:
        raise ConfigurationError(f"{label} must be {what}, got {value!r}") from None
    if lo is not None and hi is not None and not lo <= number <= hi:
        raise ConfigurationError(f"{label} must be between {lo} and {hi}, got {number}")
    if lo is not None and number < lo:
        raise ConfigurationError(f"{label} must be at least {lo}, got {number}")
    if hi is not None and number > hi:
        raise ConfigurationError(f"{label} must be at most {hi}, got {number}")
    return number


def to_bool(value: Any, label: str) -> bool:
    """true/false, yes/no, on/off, 1/0 (any case), or a JSON boolean."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ConfigurationError(f"{label} must be true or false, got {value!r}")
