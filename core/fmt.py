"""Number and money formatting for people: the CLI summaries and the HTML report use these.

Every helper takes whatever a report holds (a number, ``None``, something else)
and never raises: a value that is not a finite number is shown as ``empty``
(an en dash by default) or, for money, ``unknown``.

    >>> num(0.91234), num(None), num(3, "d"), usd(0.000412), usd_fixed(0.000412), ratio(1 / 3)
    ('0.912', '–', '3', '$0.000412', '$0.0004', '0.33×')
"""
from __future__ import annotations

import math

__all__ = ["is_number", "num", "ratio", "usd", "usd_fixed"]


def is_number(value: object) -> bool:
    """True for a finite int or float (``bool`` is not a number here).

    >>> is_number(1), is_number(0.5), is_number(True), is_number(float("nan")), is_number("1")
    (True, True, False, False, False)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return not isinstance(value, float) or math.isfinite(value)


def num(value: object, spec: str = ".3f", empty: str = "–") -> str:
    """``value`` formatted with ``spec``; ``empty`` when it is not a finite number.

    >>> num(0.5), num(-0.0123, "+.3f"), num(1234, ",d"), num(None), num(float("inf"), empty="-")
    ('0.500', '-0.012', '1,234', '–', '-')
    """
    return format(value, spec) if is_number(value) else empty


def usd(value: object) -> str:
    """USD with three significant digits and at least cents; ``unknown`` when not a number.

    >>> usd(0.000412), usd(0.5), usd(1234.5), usd(0), usd(None)
    ('$0.000412', '$0.50', '$1,234.50', '$0', 'unknown')
    """
    if not is_number(value):
        return "unknown"
    assert isinstance(value, (int, float))
    if value == 0:
        return "$0"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    decimals = max(2, 2 - math.floor(math.log10(abs(value))))   # three significant digits, at least cents
    text = f"{value:.{decimals}f}"
    while text.endswith("0") and len(text.split(".")[1]) > 2:
        text = text[:-1]
    return f"${text}"


def usd_fixed(value: object) -> str:
    """USD in fixed columns: four decimals below one dollar, cents above; ``unknown`` when not a number.

    The CLI tables use this (their columns line up); the HTML report uses :func:`usd`.

    >>> usd_fixed(0.000412), usd_fixed(0.5), usd_fixed(1234.5), usd_fixed(None)
    ('$0.0004', '$0.5000', '$1,234.50', 'unknown')
    """
    if not is_number(value):
        return "unknown"
    assert isinstance(value, (int, float))
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def ratio(value: object, empty: str = "–") -> str:
    """A multiple with two decimals and a times sign (e.g. cost relative to the best version).

    >>> ratio(0.333), ratio(2), ratio(None)
    ('0.33×', '2.00×', '–')
    """
    return f"{value:.2f}×" if is_number(value) else empty
