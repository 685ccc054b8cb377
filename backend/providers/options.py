"""Typed per-provider options: what a version's ``params:`` may hold, checked when the versions file loads.

Each provider class names a frozen dataclass (its ``Options``) whose fields are made with
:func:`option`: a default, a one-line doc and a check that says what is allowed.  A key the
provider does not take, or a value of the wrong type or range, is a
:class:`~core.errors.VersionError` that names the file, the version, the option and the fix:

>>> @dataclass(frozen=True)
... class Demo(Options):
...     max_tokens: int | None = option("most tokens to generate", integer(lo=1))
>>> Demo.parse({"max_tokens": 5}, where="p.yaml: version 'x'", provider="demo")
Demo(max_tokens=5)
>>> Demo.parse({"seed": 0}, where="p.yaml: version 'x'", provider="demo")
Traceback (most recent call last):
...
core.errors.VersionError: p.yaml: version 'x' (demo) has option 'seed', which demo does not take; it takes: max_tokens
>>> Demo.parse({"max_tokens": "lots"}, where="p.yaml: version 'x'", provider="demo")
Traceback (most recent call last):
...
core.errors.VersionError: p.yaml: version 'x' (demo) has max_tokens: 'lots'; it must be an integer >= 1
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TypeVar

from core.errors import VersionError

T = TypeVar("T", bound="Options")


@dataclass(frozen=True)
class Check:
    """A value check: ``test(value)`` is True when ``value`` is allowed; ``allowed`` says what is."""

    test: Callable[[Any], bool]
    allowed: str


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number(lo: float | None = None, hi: float | None = None, *, above: float | None = None) -> Check:
    """A real number in [lo, hi] (or strictly above ``above``).

    >>> number(0, 2).test(0.7), number(0, 2).test(3), number(above=0).allowed
    (True, False, 'a number > 0')
    """
    def test(v: Any) -> bool:
        return (_is_number(v) and (lo is None or v >= lo) and (hi is None or v <= hi)
                and (above is None or v > above))
    if above is not None:
        allowed = f"a number > {above:g}"
    elif lo is not None and hi is not None:
        allowed = f"a number from {lo:g} to {hi:g}"
    else:
        allowed = "a number" + (f" >= {lo:g}" if lo is not None else "")
    return Check(test, allowed)


def integer(lo: int | None = None) -> Check:
    """A whole number, at least ``lo``: ``integer(1).test(True) is False`` (a YAML ``yes`` is no count)."""
    def test(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and (lo is None or v >= lo)
    return Check(test, "an integer" + (f" >= {lo}" if lo is not None else ""))


def strings() -> Check:
    """A string or a non-empty list of strings (stop sequences)."""
    def test(v: Any) -> bool:
        return isinstance(v, str) or (isinstance(v, list) and bool(v) and all(isinstance(s, str) for s in v))
    return Check(test, "a string or a list of strings")


def option(doc: str, check: Check, default: Any = None) -> Any:
    """A field of an :class:`Options` dataclass: its one-line ``doc`` and ``check``."""
    return dataclasses.field(default=default, metadata={"doc": doc, "check": check})


@dataclass(frozen=True)
class Options:
    """Base of every provider's options dataclass; :meth:`parse` validates a ``params:`` mapping."""

    @classmethod
    def names(cls) -> list[str]:
        """The option names, the provider's own first, then those every provider takes."""
        own: list[str] = []
        for klass in cls.__mro__:
            own += [n for n in vars(klass).get("__annotations__", {}) if n not in own]
        return own

    @classmethod
    def describe(cls) -> dict[str, str]:
        """``{name: "doc (allowed)"}`` for every option, in :meth:`names` order."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        return {n: f"{fields[n].metadata['doc']} ({fields[n].metadata['check'].allowed})" for n in cls.names()}

    @classmethod
    def parse(cls: type[T], params: Mapping[str, Any], *, where: str, provider: str) -> T:
        """The options in ``params``; raises VersionError naming ``where`` for a key or value not allowed.

        ``None`` means "not set" for every option (the default applies).
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name, value in params.items():
            f = fields.get(name)
            if f is None:
                close = difflib.get_close_matches(str(name), fields, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise VersionError(
                    f"{where} ({provider}) has option {name!r}, which {provider} does not take{hint}; "
                    f"it takes: {', '.join(cls.names())}")
            check: Check = f.metadata["check"]
            if value is not None and not check.test(value):
                raise VersionError(f"{where} ({provider}) has {name}: {value!r}; it must be {check.allowed}")
        return cls(**{k: v for k, v in params.items() if v is not None})


@dataclass(frozen=True)
class ProviderOptions(Options):
    """The options every provider takes: the timeout per attempt and the retries (backend.providers.retry)."""

    timeout: float | None = option("seconds per attempt (default PROVIDER_TIMEOUT)", number(above=0))
    max_retries: int | None = option(
        "retries on 429/5xx/timeouts, honouring Retry-After (default PROVIDER_MAX_RETRIES)", integer(lo=0))
