"""Checks of feature parameters: each names the feature, the key and what is allowed.

Parameters reach the feature stage from the config (through Snakemake ``params:`` and the CLI's
JSON), so a wrong type or value must fail before any audio is read, as a
:class:`~merflow.errors.ConfigError` a user can act on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from merflow.errors import ConfigError
from merflow.features.windows import STATS


def _fail(feature: str, key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"config error: features.{feature}.{key} = {value!r}; expected {allowed}")


def positive_int(feature: str, params: Mapping[str, Any], key: str) -> None:
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _fail(feature, key, value, "a positive integer")


def int_in_range(
    feature: str, params: Mapping[str, Any], key: str, low: int, high: int, why: str
) -> None:
    """An integer from ``low`` to ``high``; ``why`` says where the bounds come from."""
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(feature, key, value, f"an integer from {low} to {high} ({why})")


def power_of_two(
    feature: str, params: Mapping[str, Any], key: str, low: int, high: int, why: str
) -> None:
    int_in_range(feature, params, key, low, high, why)
    value = params[key]
    if value & (value - 1):
        raise _fail(feature, key, value, f"a power of two from {low} to {high} ({why})")


def positive_number(
    feature: str, params: Mapping[str, Any], key: str, minimum: float = 0.0
) -> None:
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > minimum:
        raise _fail(feature, key, value, f"a number greater than {minimum}")


def frequency(feature: str, params: Mapping[str, Any], key: str, *, optional: bool = False) -> None:
    """A frequency in Hz between 0 and the Nyquist frequency (or null, where ``optional``)."""
    value = params[key]
    if value is None and optional:
        return
    nyquist = params["sample_rate"] / 2
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= nyquist:
        allowed = f"a frequency in Hz from 0 to the Nyquist frequency {nyquist:g}"
        raise _fail(feature, key, value, allowed + (" or null" if optional else ""))


def choice(feature: str, params: Mapping[str, Any], key: str, allowed: Sequence[str]) -> None:
    if params[key] not in allowed:
        raise _fail(feature, key, params[key], "one of " + ", ".join(allowed))


def stats(feature: str, params: Mapping[str, Any], key: str = "stats") -> None:
    value = params[key]
    if (
        not isinstance(value, list | tuple)
        or not value
        or any(s not in STATS for s in value)
        or len(set(value)) != len(value)
    ):
        raise _fail(feature, key, value, f"a non-empty list of distinct items of {list(STATS)}")
