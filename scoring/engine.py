"""Score one prompt version against ground truth or another version, control by control.

Public API::

    evaluate(tasks, label_config, version, against="ground_truth", config=None, *, intervals=INTERVALS) -> dict
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
     "skipped": [{"id", "code", "reason"}], "unscored_controls": [...],
     # with intervals (the default; ``intervals=None`` leaves them out), see scoring.uncertainty:
     "score_ci", "ci_level", "ci_seed", "ci_method", per_control[name]["ci"],
     per_label[c][l]["precision_ci" | "recall_ci" | "f1_ci"], "kappa_ci": {c: [lo, hi] | None}, "alpha_ci"}

``code`` is one of :data:`SKIP_CODES` (``no_prediction``, ``no_reference``, ``result_mismatch``,
``custom_metric_failed``), for programs; ``reason`` says it in words.

Rules (issue 4): a control with no region on either side scores 1.0, on one side
0.0; several regions of a control are merged (see each metric family).  Per-task
score = weighted mean over the scored controls; overall score = mean of per-task
scores.  A task whose result does not fit the label config is skipped and listed
with the reason; it never fails the batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from core.errors import NoReferenceError, ScoringError
from core.labelconfig import one_line as _one_line
from scoring.agreement import cohen_kappa, krippendorff_alpha
from scoring.config import ScoringConfig
from scoring.export import GROUND_TRUTH, ground_truth, prediction_of, versions_in
from scoring.metrics.spec import ResultMismatch
from scoring.schema import Control, Schema, compile_schema
from scoring.uncertainty import IntervalOptions, TaskData, add_intervals

__all__ = [
    "GROUND_TRUTH", "SKIP_CODES", "SKIP_CUSTOM_METRIC", "SKIP_NO_PREDICTION", "SKIP_NO_REFERENCE",
    "SKIP_RESULT_MISMATCH", "INTERVALS", "Control", "IntervalOptions", "Schema", "alpha_multi", "compile_schema",
    "evaluate", "evaluate_schema", "pair_results", "score_pair", "single_choice_values",
]

# Why a task was skipped: the ``code`` of each ``skipped`` entry (its ``reason`` says it in words).
SKIP_NO_PREDICTION = "no_prediction"  # the scored version has no prediction on the task
SKIP_NO_REFERENCE = "no_reference"  # no ground truth / no prediction of the reference version
SKIP_RESULT_MISMATCH = "result_mismatch"  # a result does not fit the label config
SKIP_CUSTOM_METRIC = "custom_metric_failed"  # a custom metric raised or returned a non-score
SKIP_CODES = (SKIP_NO_PREDICTION, SKIP_NO_REFERENCE, SKIP_RESULT_MISMATCH, SKIP_CUSTOM_METRIC)
INTERVALS = IntervalOptions()  # 95% intervals, seed 0


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
        raise _CustomFailed(f"custom metric {c.metric_name} failed on '{c.name}': "
                            f"{type(exc).__name__}: {_one_line(exc)}") from None
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
        raise ScoringError(f"--against names the scored version '{version}' itself: "
                           "compare with ground_truth or another version")
    found = versions_in(tasks)
    if version not in found:
        raise ScoringError(f"version '{version}' has no predictions in these tasks "
                           f"(versions found: {', '.join(found) or 'none'})")
    if against == GROUND_TRUTH:
        if not any(ground_truth(t) is not None for t in tasks):
            raise NoReferenceError("no task has a ground-truth annotation: mark one annotation per task as ground "
                                   "truth in Label Studio, or compare with another version (--against VERSION_B)")
    elif against not in found:
        raise NoReferenceError(f"reference version '{against}' has no predictions in these tasks "
                               f"(versions found: {', '.join(found)})")


def evaluate(tasks: list[dict], label_config: str, version: str, against: str = GROUND_TRUTH,
             config: ScoringConfig | None = None, *, intervals: IntervalOptions | None = INTERVALS) -> dict:
    """Score ``version``'s predictions against ``against`` on the tasks; return the report (module docstring;
    ``intervals``: level and seed, ``None`` = none).  Raises ``ScoringError`` subclasses when nothing can be
    scored: unknown version, no reference at all, or no task with both sides usable."""
    return evaluate_schema(tasks, compile_schema(label_config, config), version, against, intervals=intervals)


class _Skip(Exception):
    """A task that cannot be compared: ``code`` (one of SKIP_CODES) and the reason in words."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


@dataclass
class _Tally:
    """What the compared tasks add up to, filled task by task."""

    schema: Schema
    score_sum: float = 0.0
    n_ctrl: dict = field(default_factory=dict)  # control -> tasks scored
    sum_ctrl: dict = field(default_factory=dict)  # control -> sum of its scores
    labels: dict = field(default_factory=dict)  # control -> label -> [tp, fp, fn]
    label_rows: dict = field(default_factory=dict)  # control -> per task {label: (tp, fp, fn)} (for intervals)
    picks: dict = field(default_factory=dict)  # single-choice control -> ([prediction], [reference])
    rows: list = field(default_factory=list)
    skipped: list = field(default_factory=list)

    def __post_init__(self):
        controls = self.schema.controls
        self.n_ctrl = {c.name: 0 for c in controls}
        self.sum_ctrl = {c.name: 0.0 for c in controls}
        self.labels = {c.name: {lab: [0, 0, 0] for lab in c.spec.labels}
                       for c in controls if c.label_stats is not None and c.spec.labels}
        self.label_rows = {name: [] for name in self.labels}
        self.picks = {c.name: ([], []) for c in controls if c.single_choice}

    def skip(self, tid, code: str, reason: str) -> None:
        self.skipped.append({"id": tid, "code": code, "reason": reason})

    def add(self, row: dict, stats: list, picks: list) -> None:
        self.score_sum += row["score"]
        for name, s in row["per_control"].items():
            self.sum_ctrl[name] += s
            self.n_ctrl[name] += 1
        for c, st in stats:
            acc = self.labels.get(c.name)
            if acc is None:
                continue
            self.label_rows[c.name].append(st)
            for label, (tp, fp, fn) in st.items():
                cell = acc.get(label)
                if cell is not None:
                    cell[0] += tp
                    cell[1] += fp
                    cell[2] += fn
        for c, pp, rp in picks:
            if pp is not None and rp is not None:
                preds, refs = self.picks[c.name]
                preds.append(pp)
                refs.append(rp)
        self.rows.append(row)


def _split_side(result, schema: Schema, side: str) -> dict:
    try:
        return _split(result, schema)
    except ResultMismatch as exc:
        raise ResultMismatch(f"{side}: {exc}") from None


def _compare(task, schema: Schema, version: str, against: str):
    """Score one task: (prediction, task score, per control, label stats, picks); raises _Skip."""
    pred = prediction_of(task, version)
    if pred is None:
        raise _Skip(SKIP_NO_PREDICTION, f"no prediction of version '{version}'")
    ref = _reference(task, against)
    if ref is None:
        raise _Skip(SKIP_NO_REFERENCE, "no ground truth" if against == GROUND_TRUTH
                    else f"no prediction of version '{against}'")
    try:
        pa = _split_side(pred.get("result"), schema, "prediction")
        pb = _split_side(ref.get("result"), schema, "reference")
        score, per, stats, picks = _score_split(pa, pb, schema)
    except ResultMismatch as exc:
        raise _Skip(SKIP_RESULT_MISMATCH, f"result does not match the label config: {exc}") from None
    except _CustomFailed as exc:
        raise _Skip(SKIP_CUSTOM_METRIC, str(exc)) from None
    except (TypeError, AttributeError, KeyError, ValueError, IndexError) as exc:
        raise _Skip(SKIP_RESULT_MISMATCH, f"result does not match the label config: malformed data "
                                          f"({type(exc).__name__}: {_one_line(exc)})") from None
    return pred, score, per, stats, picks


def evaluate_schema(tasks: list[dict], schema: Schema, version: str, against: str = GROUND_TRUTH, *,
                    intervals: IntervalOptions | None = INTERVALS) -> dict:
    """``evaluate`` with an already compiled schema (for repeated runs on one config)."""
    _check_sources(tasks, version, against)
    tally = _Tally(schema)
    for i, task in enumerate(tasks):
        tid = task.get("id", i) if isinstance(task, dict) else i
        try:
            pred, score, per, stats, picks = _compare(task, schema, version, against)
        except _Skip as skip:
            tally.skip(tid, skip.code, skip.reason)
            continue
        tally.add({"id": tid, "score": score, "per_control": per, "prediction_id": pred.get("id")}, stats, picks)
    if not tally.rows:
        raise ScoringError(f"no task could be scored: {_first_reasons(tally.skipped)}")
    report = _report(tally, len(tasks), version, against)  # then the intervals, from the per-task data kept
    return report if intervals is None else add_intervals(report, TaskData(tally.label_rows, tally.picks), intervals)


def _first_reasons(skipped: list[dict]) -> str:
    reasons = "; ".join(f"task {s['id']}: {s['reason']}" for s in skipped[:3])
    more = f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else ""
    return f"{reasons}{more}"


def _per_label(tally: _Tally) -> dict:
    out = {}
    for cname, acc in tally.labels.items():
        rows = {}
        for label, (tp, fp, fn) in acc.items():
            rows[label] = {"precision": tp / (tp + fp) if tp + fp else 0.0,
                           "recall": tp / (tp + fn) if tp + fn else 0.0,
                           "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0, "support": tp + fn}
        out[cname] = rows
    return out


def _single_choice_agreement(tally: _Tally) -> tuple[dict, dict, dict]:
    """(confusion, kappa, alpha) of each single-choice control."""
    confusion, kappa, alpha = {}, {}, {}
    for cname, (preds, refs) in tally.picks.items():
        labels = list(tally.schema.by_name[cname].spec.labels)
        index = {lab: k for k, lab in enumerate(labels)}
        matrix = [[0] * len(labels) for _ in labels]
        for pp, rp in zip(preds, refs, strict=True):
            if pp in index and rp in index:
                matrix[index[rp]][index[pp]] += 1
        confusion[cname] = {"labels": labels, "matrix": matrix}
        kappa[cname] = cohen_kappa(refs, preds)
        alpha[cname] = krippendorff_alpha([refs, preds], labels)
    return confusion, kappa, alpha


def _report(tally: _Tally, n_tasks: int, version: str, against: str) -> dict:
    n = len(tally.rows)
    confusion, kappa, alpha = _single_choice_agreement(tally)
    return {
        "version": version,
        "reference": against,
        "n_tasks": n_tasks,
        "n_compared": n,
        "n_skipped": n_tasks - n,
        "score": tally.score_sum / n,
        "per_control": {c.name: {"metric": c.metric_name, "score": tally.sum_ctrl[c.name] / n,
                                 "n": tally.n_ctrl[c.name], "weight": c.weight} for c in tally.schema.controls},
        "per_label": _per_label(tally),
        "confusion": confusion,
        "kappa": kappa,
        "alpha": alpha,
        "tasks": tally.rows,
        "skipped": tally.skipped,
        "unscored_controls": sorted(tally.schema.unscored),
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
