"""Model prices (USD per one million tokens) and the cost of a call.

Prices as of :data:`PRICES_AS_OF`, standard (non-batch, uncached, <=200K-context) rates from
the vendors' published price pages (:data:`PRICES_SOURCE`).  Models released later (the
installed SDKs already name e.g. ``claude-opus-4-7`` or ``claude-sonnet-5``) are deliberately
absent until their price is checked: give such versions a ``price:``.  They change: a version's ``price:`` in the
prompts file overrides the table, and a model that is not in the table has *no* price - its
cost is reported as unknown, never guessed.  Local models (openai-compatible) cost nothing
only when their version says ``price: {input: 0, output: 0}``.

Lookup (:func:`price_for`): the version's ``price`` override; else the model name, with an
optional gateway prefix (``openai/``, ``anthropic/``) removed, matched exactly or as a table
name followed only by a snapshot suffix (``-2024-08-06``, ``-20250929``, ``@20250929``,
``-latest``)::

    >>> from backend.versions import PromptVersion
    >>> price_for(PromptVersion("v", "openai", "gpt-4o-2024-08-06", "{text}"))
    Price(input=2.5, output=10.0)
    >>> price_for(PromptVersion("v", "openai-compatible", "llama3.1:8b", "{text}")) is None
    True
"""
from __future__ import annotations

import re

from backend.versions import Price

PRICES_AS_OF = "2026-03-01"
PRICES_SOURCE = "https://openai.com/api/pricing/ and https://docs.anthropic.com/en/docs/about-claude/pricing"

# model name -> (USD per 1M input tokens, USD per 1M output tokens)
PRICES: dict[str, Price] = {
    # OpenAI
    "gpt-5": Price(1.25, 10.00),
    "gpt-5-mini": Price(0.25, 2.00),
    "gpt-5-nano": Price(0.05, 0.40),
    "gpt-5-chat-latest": Price(1.25, 10.00),
    "gpt-5.1": Price(1.25, 10.00),
    "gpt-5.2": Price(1.75, 14.00),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4-turbo": Price(10.00, 30.00),
    "gpt-3.5-turbo": Price(0.50, 1.50),
    "o1": Price(15.00, 60.00),
    "o3": Price(2.00, 8.00),
    "o3-mini": Price(1.10, 4.40),
    "o4-mini": Price(1.10, 4.40),
    # Anthropic
    "claude-opus-4-6": Price(5.00, 25.00),
    "claude-sonnet-4-6": Price(3.00, 15.00),
    "claude-opus-4-5": Price(5.00, 25.00),
    "claude-opus-4-1": Price(15.00, 75.00),
    "claude-opus-4-0": Price(15.00, 75.00),
    "claude-opus-4": Price(15.00, 75.00),
    "claude-sonnet-4-5": Price(3.00, 15.00),
    "claude-sonnet-4-0": Price(3.00, 15.00),
    "claude-sonnet-4": Price(3.00, 15.00),
    "claude-haiku-4-5": Price(1.00, 5.00),
    "claude-3-7-sonnet": Price(3.00, 15.00),
    "claude-3-5-sonnet": Price(3.00, 15.00),
    "claude-3-5-haiku": Price(0.80, 4.00),
    "claude-3-opus": Price(15.00, 75.00),
    "claude-3-haiku": Price(0.25, 1.25),
}

_SNAPSHOT = re.compile(r"(?:-\d{4}-\d{2}-\d{2}|-\d{8}|@\d{8}|-latest)")
_GATEWAY_PREFIXES = ("openai/", "anthropic/")


def lookup(model: str) -> Price | None:
    """The table price of ``model``, accepting dated snapshots, else None.

    >>> lookup("claude-sonnet-4-5-20250929")
    Price(input=3.0, output=15.0)
    >>> lookup("gpt-4o-audio-preview") is None      # a different model, not gpt-4o
    True
    """
    name = model.strip().lower()
    for prefix in _GATEWAY_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix):]
    if name in PRICES:
        return PRICES[name]
    for base in sorted(PRICES, key=len, reverse=True):
        if name.startswith(base) and _SNAPSHOT.fullmatch(name[len(base):]):
            return PRICES[base]
    return None


def price_for(version) -> Price | None:
    """The price of a PromptVersion: its ``price`` override, else :func:`lookup` of its model, else None."""
    if version.price is not None:
        return version.price
    return lookup(version.model)


def cost_usd(usage, price: Price | None) -> float | None:
    """USD for ``usage`` (input/output tokens) at ``price``; None when the price is unknown.

    >>> from backend.providers.base import Usage
    >>> cost_usd(Usage(input_tokens=1_000_000, output_tokens=500_000), Price(0.15, 0.60))
    0.45
    """
    if price is None:
        return None
    return round((usage.input_tokens * price.input + usage.output_tokens * price.output) / 1_000_000, 10)
