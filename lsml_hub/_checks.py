"""Type checks of config values, shared by every config that validates where its values enter.

YAML and JSON give ``bool`` for ``true``, and ``bool`` is a subclass of ``int`` in Python: each check
here refuses it where a number is meant.
"""

from __future__ import annotations

from typing import Any

from lsml_hub.errors import ConfigError


def is_int(value: Any) -> bool:
    """An ``int`` that is not a ``bool``.

    Example:
        >>> is_int(3), is_int(True), is_int(3.0)
        (True, False, False)
    """
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An ``int`` or ``float`` that is not a ``bool``.

    Example:
        >>> is_number(0.5), is_number(2), is_number(False), is_number("1")
        (True, True, False, False)
    """
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def require(key: str, value: Any, ok: bool, what: str) -> None:
    """Raise ``ConfigError("KEY must be WHAT, got VALUE")`` unless ``ok``.

    Example:
        >>> require("steps", 0, is_int(0) and 0 > 0, "a positive integer")
        Traceback (most recent call last):
        ...
        lsml_hub.errors.ConfigError: steps must be a positive integer, got 0
    """
    if not ok:
        raise ConfigError(f"{key} must be {what}, got {value!r}")


def check_positive_int(key: str, value: Any) -> None:
    """:func:`require` an integer above 0.

    Example:
        >>> check_positive_int("batch_size", 16)
    """
    require(key, value, is_int(value) and value > 0, "a positive integer")
