"""The label config compiled for scoring: each scored control with its metric, resolved once.

:func:`compile_schema` reads the config through :mod:`core.labelconfig` (the same reading the
backend uses, so ``choice="multiple"``, ``maxRating``, ``min``/``max`` and the declared labels
mean the same on both sides) and picks each control's metric from the registry
(:data:`scoring.metrics.REGISTRY`) or ``scoring.yaml``.

>>> s = compile_schema('<View><Text name="t" value="$t"/><Rating name="q" toName="t" maxRating="5.0"/></View>')
>>> c = s.by_name["q"]
>>> c.metric_name, c.spec.range
('linear', 4.0)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from core import labelconfig
from core.errors import LabelConfigError, ScoringConfigError
from core.labelconfig import ControlInfo
from scoring.config import ControlConfig, ScoringConfig
from scoring.metrics import REGISTRY
from scoring.metrics.spec import ControlSpec


@dataclass
class Control:
    """A scored control with everything the per-task loop needs, resolved once."""

    name: str
    spec: ControlSpec
    metric_name: str
    metric: Callable
    extract: Callable
    empty: object
    weight: float = 1.0
    from_stats: Callable | None = None
    label_stats: Callable | None = None
    custom: bool = False
    single_choice: bool = False


@dataclass
class Schema:
    """The label config compiled for scoring (build with ``compile_schema``)."""

    controls: list[Control]
    unscored: frozenset = frozenset()
    by_name: dict = field(default_factory=dict)

    def __post_init__(self):
        self.by_name = {c.name: c for c in self.controls}
        self.total_weight = sum(c.weight for c in self.controls)


def compile_schema(label_config: str, config: ScoringConfig | None = None) -> Schema:
    """Read the label config once (cached in :mod:`core.labelconfig`) and resolve each control's metric.

    Raises ``LabelConfigError`` for an unusable config and ``ScoringConfigError`` when
    scoring.yaml names an unknown control or metric.
    """
    config = config or ScoringConfig()
    lc = labelconfig.parse(label_config)
    tags = {c.name: c.tag for c in lc.controls}
    unscored = frozenset(c.name for c in lc.controls if c.tag not in REGISTRY)
    controls = [_scored(c, config) for c in lc.controls if c.tag in REGISTRY]
    _check_named_controls(config, tags, unscored)
    if not controls:
        raise LabelConfigError("the label config has no control that can be scored "
                               f"(scored tags: {', '.join(REGISTRY)})")
    schema = Schema(controls=controls, unscored=unscored)
    if schema.total_weight <= 0:
        raise ScoringConfigError(f"{_source(config)}: all control weights are 0")
    return schema


def _source(config: ScoringConfig) -> str:
    return config.source or "scoring config"


def _scored(info: ControlInfo, config: ScoringConfig) -> Control:
    record = REGISTRY[info.tag]
    cc = config.for_control(info.name)
    spec = ControlSpec.of(info)
    metric_name, metric, from_stats, custom = _metric(info, cc, config)
    return Control(
        name=info.name, spec=spec, metric_name=metric_name, metric=metric, extract=record.extract,
        empty=record.empty, weight=cc.weight, from_stats=from_stats, label_stats=record.label_stats,
        custom=custom, single_choice=(info.tag == "Choices" and not spec.multiple),
    )


def _metric(info: ControlInfo, cc: ControlConfig, config: ScoringConfig) -> tuple[str, Callable, Any, bool]:
    """(metric name, function, its from-stats shortcut or None, custom?) for one control."""
    record = REGISTRY[info.tag]
    metric_name = cc.metric or record.default
    if cc.custom is not None:
        return metric_name, cc.custom, None, True
    if metric_name in record.metrics:
        return metric_name, record.metrics[metric_name], record.from_stats.get(metric_name), False
    raise ScoringConfigError(
        f"{_source(config)}: control '{info.name}' is {info.tag}; metric '{metric_name}' "
        f"is not one of {', '.join(record.metrics)} (or package.module:function)")


def _check_named_controls(config: ScoringConfig, tags: dict[str, str], unscored: frozenset) -> None:
    for name in config.controls:
        if name not in tags:
            raise ScoringConfigError(f"{_source(config)}: control '{name}' is not in the label config "
                                     f"(its controls: {', '.join(tags) or 'none'})")
        if name in unscored:
            raise ScoringConfigError(f"{_source(config)}: control '{name}' is a {tags[name]}, "
                                     f"which has no metric (scored tags: {', '.join(REGISTRY)})")


def read_label_config(path: str) -> str:
    """The label config XML text of ``path``; ``LabelConfigError`` when unreadable or empty."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelConfigError(f"cannot read label config {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not text.strip():
        raise LabelConfigError(f"label config {path} is empty")
    return text
