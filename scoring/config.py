"""``scoring.yaml``: per-control metric choice, weights and custom metrics.

Example (see ``scoring.example.yaml``)::

    controls:
      sentiment: {metric: jaccard, weight: 2}
      summary:   token_set                      # shorthand: just the metric name
      ner:
        metric: my_metrics.ner:agreement        # custom metric, package.module:function
        weight: 0.5

A custom metric has Label Studio's custom agreement signature
``agreement(annotation_1, annotation_2, per_label=False) -> float``; it receives
``{"result": [regions of that control]}`` for the prediction (1) and the reference (2)
and must return a number in [0, 1].  Metric names are checked against the label
config when scoring starts (``engine.compile_schema``).
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Callable

from core.errors import ScoringConfigError

_CONTROL_KEYS = {"metric", "weight"}


@dataclass(frozen=True)
class ControlConfig:
    """Scoring settings of one control: metric name (None = the tag's default) or a
    custom function, and its weight in the per-task score."""

    metric: str | None = None
    weight: float = 1.0
    custom: Callable | None = None     # loaded custom function when metric is "module:function"


@dataclass(frozen=True)
class ScoringConfig:
    """All of scoring.yaml; ``ScoringConfig()`` is the all-defaults config."""

    controls: dict[str, ControlConfig] = field(default_factory=dict)
    source: str | None = None          # path it was read from, for messages

    def for_control(self, name: str) -> ControlConfig:
        """Settings of control ``name`` (defaults when scoring.yaml does not mention it)."""
        return self.controls.get(name) or ControlConfig()


def load_scoring_config(path: str | None) -> ScoringConfig:
    """Read scoring.yaml at ``path``; ``None`` gives the defaults.  Raises
    ``ScoringConfigError`` (one line) for a missing/malformed file or a custom
    metric that cannot be imported."""
    if path is None:
        return ScoringConfig()
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ScoringConfigError(f"cannot read scoring config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ScoringConfigError(f"{path} is not valid YAML{where}: {problem}") from None
    return parse_scoring_config(data, path)


def parse_scoring_config(data, source: str = "scoring config") -> ScoringConfig:
    """Build a ``ScoringConfig`` from already-parsed YAML data."""
    if data is None:
        return ScoringConfig(source=source)
    if not isinstance(data, dict):
        raise ScoringConfigError(f"{source}: expected a mapping with a 'controls' key")
    unknown = set(data) - {"controls"}
    if unknown:
        keys = ", ".join(sorted(map(str, unknown)))
        raise ScoringConfigError(f"{source}: unknown key(s) {keys}; only 'controls' is allowed")
    raw_controls = data.get("controls") or {}
    if not isinstance(raw_controls, dict):
        raise ScoringConfigError(f"{source}: 'controls' must map control names to settings")
    controls = {}
    for name, raw in raw_controls.items():
        controls[str(name)] = _parse_control(str(name), raw, source)
    return ScoringConfig(controls=controls, source=source)


def _parse_control(name: str, raw, source: str) -> ControlConfig:
    if isinstance(raw, str):
        raw = {"metric": raw}
    if not isinstance(raw, dict):
        raise ScoringConfigError(f"{source}: control '{name}' must be a metric name or a mapping with metric/weight")
    unknown = set(raw) - _CONTROL_KEYS
    if unknown:
        keys = ", ".join(sorted(map(str, unknown)))
        raise ScoringConfigError(f"{source}: control '{name}' has unknown key(s) {keys}; use metric and weight")
    metric = raw.get("metric")
    if metric is not None and (not isinstance(metric, str) or not metric.strip()):
        raise ScoringConfigError(f"{source}: control '{name}': metric must be a name or package.module:function")
    weight = raw.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0 or weight == float("inf"):
        raise ScoringConfigError(f"{source}: control '{name}': weight must be a number >= 0, got {weight!r}")
    custom = load_custom_metric(metric, name, source) if metric and ":" in metric else None
    return ControlConfig(metric=metric.strip() if metric else None, weight=float(weight), custom=custom)


def load_custom_metric(spec: str, control: str = "?", source: str = "scoring config") -> Callable:
    """Import ``package.module:function`` and check it accepts
    ``(annotation_1, annotation_2, per_label=False)``."""
    module_name, _, func_name = spec.strip().partition(":")
    if not module_name or not func_name:
        raise ScoringConfigError(
            f"{source}: control '{control}': custom metric must be written package.module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an ImportError or an error raised by the module's own code
        raise ScoringConfigError(f"{source}: cannot import custom metric module '{module_name}' for control "
                                 f"'{control}': {type(exc).__name__}: {exc}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ScoringConfigError(
            f"{source}: module '{module_name}' has no function '{func_name}' (control '{control}')")
    try:
        inspect.signature(func).bind({"result": []}, {"result": []}, per_label=False)
    except TypeError:
        raise ScoringConfigError(
            f"{source}: custom metric {spec} must accept (annotation_1, annotation_2, per_label=False)") from None
    except ValueError:
        pass  # builtins without a signature: trust them
    return func
