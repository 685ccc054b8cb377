"""Score one prompt version against ground truth or another version, control by control.

Public API::

    evaluate(tasks, label_config, version, against="ground_truth", config=None) -> dict
    compile_schema(label_config, config=None) -> Schema        # parse the label config once
    pair_results(task, version, against="ground_truth") -> (prediction, reference)
    score_pair(pred_result, ref_result, schema) -> (score, {control: score})
    single_choice_values(tasks, schema, source, control) -> [label | None per task]
    alpha_multi(tasks, label_config, sources, control) -> float | None

``tasks`` are Label Studio export task dicts.  ``against`` is ``"ground_truth"`` (the
annotation flagged ground_truth) or another model version.  The report (all plain
JSON types; ``None`` where a statistic is undefined)::

    {"version", "reference", "n_tasks", "n_compared", "n_skipped", "score",
     "per_control": {name: {"metric", "score", "n", "weight"}},
     "per_label": {control: {label: {"precision", "recall", "f1", "support"}}},
     "confusion": {control: {"labels": [...], "matrix": [[...]]}},   # rows = reference
     "kappa": {control: float | None}, "alpha": {control: float | None},
     "tasks": [{"id", "score", "per_control": {name: float}, "prediction_id"}],  # compared tasks
     "skipped": [{"id", "reason"}], "unscored_controls": [...]}

Rules (issue 4): a control with no region on either side scores 1.0, on one side
0.0; several regions of a control are merged (see each metric family).  Per-task
score = weighted mean over the scored controls; overall score = mean of per-task
scores.  A task whose result does not fit the label config is skipped and listed
with the reason; it never fails the batch.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable

from core.errors import LabelConfigError
from scoring.agreement import cohen_kappa, krippendorff_alpha
from scoring.config import ScoringConfig
from core.errors import NoReferenceError, ScoringConfigError, ScoringError
from scoring.export import GROUND_TRUTH, ground_truth, prediction_of, versions_in
from scoring.metrics import DEFAULTS, EMPTY_VALUE, EXTRACTORS, LABEL_STATS, REGISTRY
from scoring.metrics.spec import ControlSpec, ResultMismatch


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


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()


def _canonical_tag(control) -> str:
    cls = type(control).__name__
    if cls.endswith("Tag") and cls != "ControlTag":
        return cls[:-3]
    return str(control.tag)


def _range(tag: str, attr: dict) -> float | None:
    try:
        if tag == "Rating":
            r = float(int(attr.get("maxRating", 5)) - 1)
            return r if r > 0 else None
        if tag == "Number" and attr.get("min") is not None and attr.get("max") is not None:
            r = float(attr["max"]) - float(attr["min"])
            return r if r > 0 and math.isfinite(r) else None
    except (TypeError, ValueError):
        return None
    return None


def compile_schema(label_config: str, config: ScoringConfig | None = None) -> Schema:
    """Parse the label config once (LabelInterface) and resolve each control's metric.

    Raises ``LabelConfigError`` for an unusable config and ``ScoringConfigError`` when
    scoring.yaml names an unknown control or metric.
    """
    from label_studio_sdk.label_interface import LabelInterface

    config = config or ScoringConfig()
    try:
        li = LabelInterface(label_config)
        raw_controls = list(li.controls or ())
    except Exception as exc:  # lxml / pydantic errors of a broken config
        raise LabelConfigError(f"the label config cannot be parsed: {_one_line(exc)}") from None
    controls, unscored, tags = [], set(), {}
    for c in raw_controls:
        tag = _canonical_tag(c)
        tags[c.name] = tag
        if tag not in REGISTRY:
            unscored.add(c.name)
            continue
        cc = config.for_control(c.name)
        spec = ControlSpec(
            name=c.name,
            tag=tag,
            labels=tuple(str(x) for x in (c.labels or ())),
            multiple=str(c.attr.get("choice", "")).lower() == "multiple",
            range=_range(tag, c.attr),
        )
        metric_name = cc.metric or DEFAULTS[tag]
        if cc.custom is not None:
            metric, from_stats, custom = cc.custom, None, True
        elif metric_name in REGISTRY[tag]:
            metric = REGISTRY[tag][metric_name]
            from_stats, custom = getattr(metric, "from_stats", None), False
        else:
            raise ScoringConfigError(
                f"{config.source or 'scoring config'}: control '{c.name}' is {tag}; metric '{metric_name}' "
                f"is not one of {', '.join(REGISTRY[tag])} (or package.module:function)")
        controls.append(Control(
            name=c.name, spec=spec, metric_name=metric_name, metric=metric, extract=EXTRACTORS[tag],
            empty=EMPTY_VALUE[tag], weight=cc.weight, from_stats=from_stats,
            label_stats=LABEL_STATS.get(tag), custom=custom,
            single_choice=(tag == "Choices" and not spec.multiple),
        ))
    for name in config.controls:
        if name not in tags:
            raise ScoringConfigError(f"{config.source or 'scoring config'}: control '{name}' is not in the label config "
                                     f"(its controls: {', '.join(tags) or 'none'})")
        if name in unscored:
            raise ScoringConfigError(f"{config.source or 'scoring config'}: control '{name}' is a {tags[name]}, "
                                     f"which has no metric (scored tags: {', '.join(REGISTRY)})")
    if not controls:
        raise LabelConfigError("the label config has no control that can be scored "
                               f"(scored tags: {', '.join(REGISTRY)})")
    schema = Schema(controls=controls, unscored=frozenset(unscored))
    if schema.total_weight <= 0:
        raise ScoringConfigError(f"{config.source or 'scoring config'}: all control weights are 0")
    return schema


# ---------------------------------------------------------------- per task

def _split(result, schema: Schema) -> dict:
    """Regions of a result list grouped by scored control name."""
    if type(result) is not list:
        raise ResultMismatch("its result is not a list of regions")
    by: dict = {}
    scored, unscored = schema.by_name, schema.unscored
    for r in result:
        if type(r) is not dict:
            raise ResultMismatch("a region is not an object")
        name = r.get("from_name")
        if name in scored:
            lst = by.get(name)
            if lst is None:
                by[name] = [r]
            else:
                lst.append(r)
        elif name is None or name in unscored:
            continue  # relations, and controls without a metric
        else:
            raise ResultMismatch(f"region from_name '{name}' is not a control of the label config")
    return by


class _CustomFailed(Exception):
    pass


def _call_custom(c: Control, ra, rb) -> float:
    try:
        v = c.metric({"result": ra}, {"result": rb}, per_label=False)
    except Exception as exc:
        raise _CustomFailed(f"custom metric {c.metric_name} failed on '{c.name}': {type(exc).__name__}: {_one_line(exc)}") from None
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise _CustomFailed(f"custom metric {c.metric_name} returned {v!r} for '{c.name}', not a number") from None
    if not 0.0 <= v <= 1.0:
        raise _CustomFailed(f"custom metric {c.metric_name} returned {v!r} for '{c.name}', outside [0, 1]")
    return v


def _score_split(pa: dict, pb: dict, schema: Schema):
    """Score two grouped results.  Returns (task score, {control: score},
    [(control, label stats)], [(control, pred pick, ref pick)])."""
    per: dict = {}
    stats: list = []
    picks: list = []
    total = 0.0
    for c in schema.controls:
        name = c.name
        ra = pa.get(name)
        rb = pb.get(name)
        try:
            a = c.extract(ra, c.spec) if ra else None
        except ResultMismatch as exc:
            raise ResultMismatch(f"prediction: {exc}") from None
        try:
            b = c.extract(rb, c.spec) if rb else None
        except ResultMismatch as exc:
            raise ResultMismatch(f"reference: {exc}") from None
        st = None
        if c.label_stats is not None:
            st = c.label_stats(c.empty if a is None else a, c.empty if b is None else b)
            stats.append((c, st))
        if a is None:
            s = 1.0 if b is None else 0.0
        elif b is None:
            s = 0.0
        elif c.custom:
            s = _call_custom(c, ra, rb)
        elif st is not None and c.from_stats is not None:
            s = c.from_stats(st)
        else:
            s = c.metric(a, b, c.spec)
        if c.single_choice:
            picks.append((c, next(iter(a)) if a is not None and len(a) == 1 else None,
                          next(iter(b)) if b is not None and len(b) == 1 else None))
        per[name] = s
        total += c.weight * s
    return total / schema.total_weight, per, stats, picks


def score_pair(pred_result: list, ref_result: list, schema: Schema) -> tuple[float, dict[str, float]]:
    """Agreement of two Label Studio result lists: (task score in [0, 1], {control: score}).

    Raises ``ResultMismatch`` when a result does not fit the label config.
    """
    score, per, _, _ = _score_split(_split(pred_result, schema), _split(ref_result, schema), schema)
    return score, per


# ---------------------------------------------------------------- whole run

def _reference(task: dict, against: str):
    if against == GROUND_TRUTH:
        return ground_truth(task)
    return prediction_of(task, against)


def pair_results(task: dict, version: str, against: str = GROUND_TRUTH) -> tuple[dict | None, dict | None]:
    """The two sides of one task: (newest prediction of ``version``, reference), where the
    reference is the ground-truth annotation or the newest prediction of version ``against``;
    either is None when missing.  ``score_pair(pred["result"], ref["result"], schema)`` scores them.
    """
    return prediction_of(task, version), _reference(task, against)


def _check_sources(tasks: list[dict], version: str, against: str) -> None:
    if not tasks:
        raise ScoringError("there are no tasks to score")
    if against == version:
        raise ScoringError(f"--against names the scored version '{version}' itself: compare with ground_truth or another version")
    found = versions_in(tasks)
    if version not in found:
        raise ScoringError(f"version '{version}' has no predictions in these tasks "
                           f"(versions found: {', '.join(found) or 'none'})")
    if against == GROUND_TRUTH:
        if not any(ground_truth(t) is not None for t in tasks):
            raise NoReferenceError("no task has a ground-truth annotation: mark one annotation per task as ground truth "
                                   "in Label Studio, or compare with another version (--against VERSION_B)")
    elif against not in found:
        raise NoReferenceError(f"reference version '{against}' has no predictions in these tasks "
                               f"(versions found: {', '.join(found)})")


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def evaluate(tasks: list[dict], label_config: str, version: str, against: str = GROUND_TRUTH,
             config: ScoringConfig | None = None) -> dict:
    """Score ``version``'s predictions against ``against`` on the tasks; return the report
    (see the module docstring).  Raises ``ScoringError`` subclasses when nothing can be
    scored: unknown version, no reference at all, or no task with both sides usable."""
    schema = compile_schema(label_config, config)
    return evaluate_schema(tasks, schema, version, against)


def evaluate_schema(tasks: list[dict], schema: Schema, version: str, against: str = GROUND_TRUTH) -> dict:
    """``evaluate`` with an already compiled schema (for repeated runs on one config)."""
    _check_sources(tasks, version, against)
    ref_word = "ground truth" if against == GROUND_TRUTH else f"prediction of version '{against}'"
    n_ctrl = {c.name: 0 for c in schema.controls}
    sum_ctrl = {c.name: 0.0 for c in schema.controls}
    label_acc = {c.name: {lab: [0, 0, 0] for lab in c.spec.labels}
                 for c in schema.controls if c.label_stats is not None and c.spec.labels}
    pick_acc = {c.name: ([], []) for c in schema.controls if c.single_choice}
    task_rows, skipped = [], []
    score_sum = 0.0
    for i, task in enumerate(tasks):
        tid = task.get("id", i) if isinstance(task, dict) else i
        try:
            pred = prediction_of(task, version)
            if pred is None:
                skipped.append({"id": tid, "reason": f"no prediction of version '{version}'"})
                continue
            ref = _reference(task, against)
            if ref is None:
                skipped.append({"id": tid, "reason": f"no {ref_word}"})
                continue
            try:
                pa = _split(pred.get("result"), schema)
            except ResultMismatch as exc:
                raise ResultMismatch(f"prediction: {exc}") from None
            try:
                pb = _split(ref.get("result"), schema)
            except ResultMismatch as exc:
                raise ResultMismatch(f"reference: {exc}") from None
            score, per, stats, picks = _score_split(pa, pb, schema)
        except ResultMismatch as exc:
            skipped.append({"id": tid, "reason": f"result does not match the label config: {exc}"})
            continue
        except _CustomFailed as exc:
            skipped.append({"id": tid, "reason": str(exc)})
            continue
        except (TypeError, AttributeError, KeyError, ValueError, IndexError) as exc:
            skipped.append({"id": tid, "reason": f"result does not match the label config: malformed data "
                                                 f"({type(exc).__name__}: {_one_line(exc)})"})
            continue
        # commit the task
        score_sum += score
        for name, s in per.items():
            sum_ctrl[name] += s
            n_ctrl[name] += 1
        for c, st in stats:
            acc = label_acc.get(c.name)
            if acc is None:
                continue
            for label, (tp, fp, fn) in st.items():
                cell = acc.get(label)
                if cell is not None:
                    cell[0] += tp
                    cell[1] += fp
                    cell[2] += fn
        for c, pp, rp in picks:
            if pp is not None and rp is not None:
                preds, refs = pick_acc[c.name]
                preds.append(pp)
                refs.append(rp)
        task_rows.append({"id": tid, "score": score, "per_control": per, "prediction_id": pred.get("id")})

    n = len(task_rows)
    if n == 0:
        reasons = "; ".join(f"task {s['id']}: {s['reason']}" for s in skipped[:3])
        more = f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else ""
        raise ScoringError(f"no task could be scored: {reasons}{more}")

    per_label = {}
    for cname, acc in label_acc.items():
        rows = {}
        for label, (tp, fp, fn) in acc.items():
            p, r = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
            rows[label] = {"precision": p, "recall": r, "f1": _ratio(2 * tp, 2 * tp + fp + fn), "support": tp + fn}
        per_label[cname] = rows

    confusion, kappa, alpha = {}, {}, {}
    for cname, (preds, refs) in pick_acc.items():
        labels = list(schema.by_name[cname].spec.labels)
        index = {lab: k for k, lab in enumerate(labels)}
        matrix = [[0] * len(labels) for _ in labels]
        for pp, rp in zip(preds, refs):
            if pp in index and rp in index:
                matrix[index[rp]][index[pp]] += 1
        confusion[cname] = {"labels": labels, "matrix": matrix}
        kappa[cname] = cohen_kappa(refs, preds)
        alpha[cname] = krippendorff_alpha([refs, preds], labels)

    return {
        "version": version,
        "reference": against,
        "n_tasks": len(tasks),
        "n_compared": n,
        "n_skipped": len(tasks) - n,
        "score": score_sum / n,
        "per_control": {c.name: {"metric": c.metric_name, "score": sum_ctrl[c.name] / n, "n": n_ctrl[c.name],
                                 "weight": c.weight} for c in schema.controls},
        "per_label": per_label,
        "confusion": confusion,
        "kappa": kappa,
        "alpha": alpha,
        "tasks": task_rows,
        "skipped": skipped,
        "unscored_controls": sorted(schema.unscored),
    }


# ---------------------------------------------------------------- several sources

def single_choice_values(tasks: list[dict], schema: Schema, source: str, control: str) -> list[str | None]:
    """Per task, the single label that ``source`` (a model version, or ``"ground_truth"``)
    chose for single-choice control ``control``; ``None`` when missing, not exactly one
    choice, or not matching the config."""
    c = schema.by_name.get(control)
    if c is None or not c.single_choice:
        raise ScoringError(f"'{control}' is not a single-choice Choices control of the label config")
    out: list = []
    for task in tasks:
        item = ground_truth(task) if source == GROUND_TRUTH else prediction_of(task, source)
        value = None
        if item is not None:
            try:
                regs = _split(item.get("result"), schema).get(control)
                if regs:
                    chosen = c.extract(regs, c.spec)
                    if len(chosen) == 1:
                        value = next(iter(chosen))
            except (ResultMismatch, TypeError, AttributeError, KeyError, ValueError):
                value = None
        out.append(value)
    return out


def alpha_multi(tasks: list[dict], label_config: str, sources: list[str], control: str) -> float | None:
    """Nominal Krippendorff's alpha of a single-choice control across two or more
    sources (model versions and/or ``"ground_truth"``); units are tasks, a source that
    did not choose exactly one label on a task is a missing value.  ``None`` when undefined.

    Example: ``alpha_multi(tasks, cfg, ["v-good", "v-cheap", "ground_truth"], "sentiment")``.
    """
    if len(sources) < 2:
        raise ScoringError("alpha needs at least two sources")
    schema = compile_schema(label_config)
    rows = [single_choice_values(tasks, schema, s, control) for s in sources]
    return krippendorff_alpha(rows, schema.by_name[control].spec.labels)
