"""Prompt versions: named, immutable pairings of provider, model, instruction and parameters.

A versions file (``PROMPTS_FILE``, default ``prompts.yaml``) looks like::

    default: sentiment-mini-v1          # used when a project names no version
    versions:
      - id: sentiment-mini-v1           # stamped verbatim as the prediction's model_version
        provider: openai                # openai | anthropic | openai-compatible
        model: gpt-4o-mini
        instruction: |                  # may use task data fields: {text}, {image}, ...
          Classify the sentiment of this review: {text}
        params: {temperature: 0, max_tokens: 1024}   # optional: the provider's options, checked here
        price: {input: 0.15, output: 0.60}           # optional USD per 1M tokens override
        base_url: http://127.0.0.1:11434/v1          # optional (openai-compatible: required
                                                     #   unless OPENAI_BASE_URL is set)
        cache: false                                 # optional: never answer from the response cache
                                                     #   (backend.cache; default true)

A version is immutable: change the instruction or the model and you make a new
id, so that every prediction in Label Studio can be traced to exactly what
produced it.  Errors in the file raise :class:`~core.errors.VersionError`
with the file name, the version and the fix.
"""
from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import yaml

from backend.providers import PROVIDERS
from core.errors import VersionError

_ALLOWED_KEYS = {"id", "provider", "model", "instruction", "params", "price", "base_url", "description", "cache"}


@dataclass(frozen=True)
class Price:
    """USD per one million tokens."""

    input: float
    output: float


@dataclass(frozen=True)
class PromptVersion:
    id: str
    provider: str
    model: str
    instruction: str
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    price: Price | None = None
    base_url: str | None = None
    description: str = ""
    cache: bool = True          # answers may come from / go to the response cache (backend.cache)

    @property
    def fields(self) -> list[str]:
        """Task data fields the instruction refers to, in order of first use."""
        seen: list[str] = []
        for _, name, _, _ in string.Formatter().parse(self.instruction):
            if name is not None and name != "":
                root = name.split(".")[0].split("[")[0]
                if root not in seen:
                    seen.append(root)
        return seen

    @property
    def fingerprint(self) -> str:
        """A short hash of everything that changes the output (for caches and reports)."""
        body = json.dumps(
            [self.provider, self.model, self.instruction, dict(self.params), self.base_url],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(body.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class VersionSet:
    versions: Mapping[str, PromptVersion]
    default: str | None
    source: str = "<memory>"

    def get(self, version_id: str | None) -> PromptVersion:
        """The version named ``version_id``, or the default when it is empty."""
        vid = version_id or self.default
        if not vid:
            raise VersionError(
                f"no version chosen and {self.source} has no `default:`; add `default: <id>` to the file "
                'or set the ML backend\'s extra params to {"version": "<id>"}'
            )
        try:
            return self.versions[vid]
        except KeyError:
            known = ", ".join(sorted(self.versions)) or "(none)"
            raise VersionError(f"unknown prompt version {vid!r}; {self.source} defines: {known}") from None

    def __iter__(self):
        return iter(self.versions.values())

    def __len__(self) -> int:
        return len(self.versions)


def _parse_price(raw: Any, where: str) -> Price | None:
    """The ``price:`` of a version (None when absent); VersionError naming ``where`` when malformed."""
    if raw is None:
        return None
    try:
        price = Price(input=float(raw["input"]), output=float(raw["output"]))
    except (TypeError, KeyError, ValueError):
        raise VersionError(f"{where}: `price` must be {{input: <USD per 1M>, output: <USD per 1M>}}") from None
    if price.input < 0 or price.output < 0:
        raise VersionError(f"{where}: prices cannot be negative")
    return price


def _parse_version(raw: Any, index: int, source: str) -> PromptVersion:
    where = f"{source}: versions[{index}]"
    if not isinstance(raw, dict):
        raise VersionError(f"{where} must be a mapping with id, provider, model and instruction")
    vid = raw.get("id")
    if not isinstance(vid, str) or not vid.strip():
        raise VersionError(f"{where} needs an `id` (a non-empty string, used as model_version)")
    where = f"{source}: version {vid!r}"
    unknown = set(raw) - _ALLOWED_KEYS
    if unknown:
        raise VersionError(f"{where} has unknown keys {sorted(unknown)}; allowed: {sorted(_ALLOWED_KEYS)}")
    provider = raw.get("provider")
    if provider not in PROVIDERS:
        raise VersionError(f"{where}: provider {provider!r} is not one of {', '.join(PROVIDERS)}")
    for key in ("model", "instruction"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise VersionError(f"{where} needs a non-empty `{key}`")
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise VersionError(f"{where}: `params` must be a mapping, e.g. {{max_tokens: 1024}}")
    PROVIDERS[provider].Options.parse(params, where=where, provider=provider)
    price = _parse_price(raw.get("price"), where)
    base_url = raw.get("base_url")
    if base_url is not None and (not isinstance(base_url, str) or not base_url.startswith(("http://", "https://"))):
        raise VersionError(f"{where}: `base_url` must be an http(s) URL")
    if not isinstance(raw.get("cache", True), bool):
        raise VersionError(f"{where}: `cache` must be true or false")
    try:
        list(string.Formatter().parse(raw["instruction"]))
    except ValueError as exc:
        raise VersionError(
            f"{where}: the instruction is not a valid template ({exc}); write literal braces as {{{{ }}}}") from None
    return PromptVersion(
        id=vid.strip(),
        provider=provider,
        model=raw["model"].strip(),
        instruction=raw["instruction"],
        params=MappingProxyType(dict(params)),
        price=price,
        base_url=base_url,
        description=str(raw.get("description") or ""),
        cache=raw.get("cache", True),
    )


def parse_versions(doc: Any, source: str = "<memory>") -> VersionSet:
    if not isinstance(doc, dict) or not isinstance(doc.get("versions"), list) or not doc["versions"]:
        raise VersionError(f"{source} must be a mapping with a non-empty `versions:` list (see prompts.example.yaml)")
    versions: dict[str, PromptVersion] = {}
    for i, raw in enumerate(doc["versions"]):
        v = _parse_version(raw, i, source)
        if v.id in versions:
            raise VersionError(f"{source}: version id {v.id!r} appears twice; ids must be unique")
        versions[v.id] = v
    default = doc.get("default")
    if default is None and len(versions) == 1:
        default = next(iter(versions))
    if default is not None and default not in versions:
        raise VersionError(f"{source}: default {default!r} is not one of the versions ({', '.join(versions)})")
    return VersionSet(versions=MappingProxyType(versions), default=default, source=source)


def load_versions(path: str, default: str | None = None) -> VersionSet:
    """Read and validate a versions file; ``default`` (``DEFAULT_VERSION``) overrides the file's."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except FileNotFoundError:
        raise VersionError(f"prompts file {path!r} not found; set PROMPTS_FILE or copy prompts.example.yaml") from None
    except yaml.YAMLError as exc:
        raise VersionError(f"{path} is not valid YAML: {exc}") from None
    vs = parse_versions(doc, source=path)
    if default:
        vs.get(default)  # raises on an unknown id
        vs = VersionSet(versions=vs.versions, default=default, source=vs.source)
    return vs
