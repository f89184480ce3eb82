"""Argument checks for every senet module: one message shape, one rule for case.

Every check returns the value it accepts (normalised where said) and otherwise raises a
``ValueError`` of one shape, naming the argument, what it must be and what it got::

    `reduction` must be a positive number, got -1

Rule for case: a string choice is matched without regard to case and returned in the
spelling of ``allowed`` (``"AVG"`` -> ``"avg"``); the word ``"none"`` (any case) and
``None`` mean "nothing" wherever an argument accepts nothing (:func:`is_none`).

This module imports nothing from senet or Keras, so every floor of the package can use it.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from typing import Any

__all__ = [
    "check_choice",
    "check_number",
    "check_positive",
    "env_cap",
    "fail",
    "is_none",
]


def fail(argument: str, what: str, value: Any) -> ValueError:
    """The one error shape: ``fail("reduction", "a positive number", -1)``.

    Returns the exception so callers write ``raise fail(...)`` and linters see the raise.
    """
    return ValueError(f"`{argument}` must be {what}, got {value!r}")


def is_none(value: Any) -> bool:
    """Whether ``value`` means "nothing": ``None`` or the word ``"none"`` in any case."""
    return value is None or (isinstance(value, str) and value.strip().lower() == "none")


def check_choice(argument: str, value: Any, allowed: Sequence[Any]) -> Any:
    """Return the member of ``allowed`` that ``value`` names (strings: case-insensitive).

    >>> check_choice("squeeze", "AVG", ("avg", "max"))
    'avg'
    """
    allowed = tuple(allowed)
    if isinstance(value, str):
        for option in allowed:
            if isinstance(option, str) and option.lower() == value.lower():
                return option
    elif value in allowed and not isinstance(value, bool):
        return value
    raise fail(argument, f"one of {allowed}", value)


def check_number(
    argument: str,
    value: Any,
    *,
    integer: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    open_minimum: bool = False,
    allow_none: bool = False,
) -> Any:
    """Return ``value`` if it is a finite real (an integer when ``integer``) within bounds.

    ``bool`` is not a number here, and NaN/inf never pass (they would only fail later, in
    ``build``). Integers come back as ``int``, NumPy scalars included.

    >>> check_number("dropout", 0.5, minimum=0, maximum=1)
    0.5
    """
    if allow_none and value is None:
        return None
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if open_minimum else value >= minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        what = "an integer" if integer else "a finite number"
        bounds = []
        if minimum is not None:
            bounds.append(f"{'>' if open_minimum else '>='} {minimum}")
        if maximum is not None:
            bounds.append(f"<= {maximum}")
        if bounds:
            what += " " + " and ".join(bounds)
        if allow_none:
            what += " or None"
        raise fail(argument, what, value)
    return int(value) if integer else value


def check_positive(
    argument: str, value: Any, *, integer: bool = False, allow_none: bool = False
) -> Any:
    """Return ``value`` if it is a positive number (a positive ``int`` when ``integer``).

    >>> check_positive("reduction", 16)
    16
    """
    if allow_none and value is None:
        return None
    kind = numbers.Integral if integer else numbers.Real
    if (
        isinstance(value, bool)
        or not isinstance(value, kind)
        or not math.isfinite(value)
        or value <= 0
    ):
        what = "a positive integer" if integer else "a positive number"
        raise fail(argument, what + (" or None" if allow_none else ""), value)
    return int(value) if integer else value


def env_cap(value: int | None, argument: str, variable: str, default: int) -> int:
    """A size cap: ``value`` when given (a positive int), else the environment ``variable``
    when set (digits, ``_`` allowed), else ``default``.

    Every cap senet applies before reading or allocating (image pixels, array bytes, JSON
    bytes) comes from here, so each is raisable the same way.

    >>> env_cap(None, "max_bytes", "SENET_EXAMPLE_CAP_UNSET", 1024)
    1024
    """
    if value is not None:
        return check_positive(argument, value, integer=True)
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        number = int(text.replace("_", ""))
    except ValueError:
        number = 0
    if number < 1:
        raise fail(variable, "a positive integer (a count, digits only)", text)
    return number
