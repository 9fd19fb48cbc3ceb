"""Small helpers shared by the hub modules."""

from __future__ import annotations


def first_line(err: BaseException) -> str:
    """The first line of an exception's message: errors here are reported as one line."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
