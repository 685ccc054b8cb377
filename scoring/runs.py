"""Running a prompt version on a Label Studio project, in this process (``python -m scoring run``).

A run lists the project's tasks (a Data Manager listing of their data and prediction versions; the
snapshot export for ``--tasks ground-truth``, which needs the annotations), selects tasks, makes a
*plan* before spending anything, then predicts the tasks in chunks through
:class:`backend.predictor.Predictor` (so the response cache and the usage ledger work exactly as for
``/predict``) and writes their predictions to Label Studio in bulk (``model_version`` = the version
id) while it predicts, every ``WRITE_BATCH`` (:func:`backend.runwork.predict_and_write`): an
interrupted run keeps what it wrote. Right before each write Label Studio is asked which of the
tasks meanwhile got a prediction of the version (an overlapping run); those are skipped, so a run
never gives a task a second prediction of the same version.

Task selection (``--tasks``, :func:`select_tasks`): ``missing`` (tasks without a prediction of the
version), ``all``, ``ground-truth`` (tasks with an annotation marked ground truth), ``sample:N``
(``random.Random(seed).sample`` of the project's task ids in ascending order, seed 0 unless
``--seed``; the same N tasks every time) or ``ids:FILE`` (task ids, one per line or a JSON list).
Whatever is selected, tasks that already have a prediction of the version are skipped.

The estimate (:meth:`Runner.plan`):

* input tokens per task = ceil(characters / 4) of its rendered prompt (system prompt + user text)
  and the JSON schema, plus 85 per image; multiplied by a calibration ratio (measured tokens /
  approximated tokens) over *measured calls*: up to 20 earlier successful calls of the version on
  this project's tasks in the usage ledger, else the sample below;
* output tokens per call = the average over the version's earlier successful, uncached calls in
  the ledger (any project); when there are none, ``--estimate-sample K`` (default 5) real calls
  are made now on a seeded sample of the tasks to predict: their cost is printed and counted in
  the run, their answers are kept (written by the run, cached for a later run after ``--estimate``);
* USD = tokens at the version's price (``backend.pricing.price_for``); unknown when the price is.

Tasks the cache answers cost nothing and are not counted in the estimate.
"""
from __future__ import annotations

import json
import logging
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from backend.ledger import open_ledger
from backend.predictor import Predictor, TaskOutcome
from backend.pricing import cost_usd, price_for
from backend.prompt import render
from backend.providers.base import Usage
from backend.runstore import open_run_store
from backend.runwork import RUN_CHUNK, counts, new_run_id, predict_and_write, write_fresh
from backend.schema import plan_for
from backend.versions import load_versions
from core.errors import Error, ScoringError
from core.labelstudio import LabelStudioClient
from core.settings import Settings
from scoring.export import ground_truth

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4        # input-token approximation: ceil(chars / 4)
IMAGE_TOKENS = 85          # per image (OpenAI's low-detail tile); calibration corrects the rest
CALIBRATION_TASKS = 20     # earlier ledger calls used to calibrate the input approximation
TASK_CHOICES = ("missing", "all", "ground-truth", "sample:N", "ids:FILE")


@dataclass
class RunOptions:
    project: int
    version: str
    tasks: str = "missing"
    seed: int = 0               # sample:N and the estimate's sample
    use_cache: bool = True      # False: --no-cache
    estimate_sample: int = 5    # real calls made for the estimate when the ledger knows nothing
    chunk: int = RUN_CHUNK      # tasks predicted per chunk (written while predicting)
    progress: bool = True
    queued: bool = False        # chunk jobs on the RQ queue (REDIS_URL), followed by the command
    detach: bool = False        # queued: return once the chunk jobs are queued


@dataclass
class Estimate:
    input_tokens: int = 0
    output_tokens: int | None = None
    usd: float | None = None
    how: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"usd": self.usd, "input_tokens": self.input_tokens, "output_tokens": self.output_tokens}


@dataclass
class RunPlan:
    label_config: str
    selected: int                                  # tasks selected by --tasks
    todo: list[dict]                               # those without a prediction of the version
    skipped_existing: int
    not_found: int = 0                             # ids:FILE ids that are not in the project
    cached: set = field(default_factory=set)       # task ids the cache answers (or a repeat of an earlier request)
    unrenderable: dict = field(default_factory=dict)  # task id -> reason (fails without a call)
    approx: dict = field(default_factory=dict)     # task id -> approximated input tokens
    sample: list[TaskOutcome] = field(default_factory=list)  # calls already made for the estimate
    estimate: Estimate = field(default_factory=Estimate)

    @property
    def calls(self) -> int:
        """Provider calls of the run (the sample's included)."""
        return len(self.todo) - len(self.cached) - len(self.unrenderable)


# --------------------------------------------------------------------------- selection (pure)
def has_prediction(task: dict, version: str) -> bool:
    """Whether the task has a prediction of ``version``.

    >>> has_prediction({"predictions": [{"model_version": "v1"}]}, "v1"), has_prediction({}, "v1")
    (True, False)
    """
    return any(p.get("model_version") == version for p in task.get("predictions") or ())


def read_ids(path: str) -> list[int]:
    """Task ids from a file: a JSON list, or one id per line (blank lines and ``#`` comments ignored)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ScoringError(f"cannot read the task id file {path}: {exc.strerror or exc}") from None
    try:
        items = json.loads(text)
    except ValueError:
        items = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if not isinstance(items, list):
        raise ScoringError(f"{path}: expected a JSON list of task ids or one id per line")
    try:
        return [int(i) for i in items]
    except (TypeError, ValueError):
        raise ScoringError(f"{path}: every task id must be a whole number") from None


def select_tasks(tasks: list[dict], choice: str, version: str, seed: int = 0) -> tuple[list[dict], int]:
    """The tasks ``--tasks choice`` selects, in task id order, and how many listed ids were not found.

    >>> ts = [{"id": i, "predictions": [{"model_version": "v"}] if i < 3 else []} for i in range(1, 7)]
    >>> [t["id"] for t in select_tasks(ts, "missing", "v")[0]]
    [3, 4, 5, 6]
    >>> [t["id"] for t in select_tasks(ts, "sample:3", "v", seed=0)[0]]
    [1, 4, 6]
    """
    by_id = {t["id"]: t for t in sorted(tasks, key=lambda t: t["id"])}
    kind, _, arg = choice.partition(":")
    if kind == "missing" and not arg:
        return [t for t in by_id.values() if not has_prediction(t, version)], 0
    if kind == "all" and not arg:
        return list(by_id.values()), 0
    if kind == "ground-truth" and not arg:
        return [t for t in by_id.values() if ground_truth(t) is not None], 0
    if kind == "sample" and arg.isdigit():
        picked = random.Random(seed).sample(list(by_id), min(int(arg), len(by_id)))
        return [by_id[i] for i in sorted(picked)], 0
    if kind == "ids" and arg:
        wanted = sorted(set(read_ids(arg)))
        return [by_id[i] for i in wanted if i in by_id], sum(1 for i in wanted if i not in by_id)
    raise ScoringError(f"--tasks {choice!r} is not one of {', '.join(TASK_CHOICES)}")


def approx_tokens(system: str, parts: list, schema: dict) -> int:
    """ceil(characters / 4) of the prompt and the schema, plus 85 per image.

    >>> from backend.providers.base import TextPart
    >>> approx_tokens("abcd", [TextPart("abcde")], {})   # 4 + 5 + len("{}") = 11 chars
    3
    """
    chars = len(system) + len(json.dumps(schema, ensure_ascii=False))
    images = 0
    for part in parts:
        if hasattr(part, "text"):
            chars += len(part.text)
        else:
            images += 1
    return math.ceil(chars / CHARS_PER_TOKEN) + IMAGE_TOKENS * images


def spent(outcomes: list[TaskOutcome]) -> Usage:
    """The tokens the provider calls among ``outcomes`` cost (cache hits cost nothing)."""
    total = Usage()
    for o in outcomes:
        if o.usage is not None and not o.cached:
            total.input_tokens += o.usage.input_tokens
            total.output_tokens += o.usage.output_tokens
    return total


def usd_text(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


# --------------------------------------------------------------------------- the run
class Runner:
    """One run of ``options.version`` on ``options.project`` (see the module docstring)."""

    def __init__(self, settings: Settings, options: RunOptions, client: LabelStudioClient | None = None):
        self.options = options
        self.client = client or LabelStudioClient(settings)
        versions = load_versions(settings.prompts_file, settings.default_version)
        self.version = versions.get(options.version)
        self.price = price_for(self.version)
        # No Label Studio request waits on a run: each chunk gets 10 s a task (at least 10 min).
        run_settings = settings.replace(predict_deadline=float(max(600, 10 * options.chunk)))
        self.ledger = open_ledger(settings)
        self.predictor = Predictor(run_settings, versions, ledger=self.ledger,
                                   cache="auto" if options.use_cache else None)
        self.provider = self.predictor.provider_factory(self.version, run_settings)
        self.settings = settings
        self.store = open_run_store(settings)   # run records (Redis with REDIS_URL, else SQLite), write lock
        self.run_id = new_run_id()
        self.schema_plan: Any = None
        self.totals: dict | None = None

    @property
    def project(self) -> str:
        return str(self.options.project)

    # -- the plan -------------------------------------------------------------
    def plan(self) -> RunPlan:
        """Select, look up the cache, approximate tokens, measure (ledger or sample), estimate."""
        tasks, label_config = self._pull()
        self.schema_plan = plan_for(label_config)
        selected, not_found = select_tasks(tasks, self.options.tasks, self.version.id, self.options.seed)
        todo = [{"id": t["id"], "data": t.get("data") or {}} for t in selected
                if not has_prediction(t, self.version.id)]
        plan = RunPlan(label_config, len(selected), todo, len(selected) - len(todo), not_found)
        self._scan(plan, todo)
        ratio, out_per_call, how = self._measure(plan, {t["id"]: t for t in tasks})
        plan.estimate = self._estimate(plan, ratio, out_per_call, how)
        return plan

    def _pull(self) -> tuple[list[dict], str]:
        """The project's tasks (with their predictions' versions) and label config: the Data Manager
        listing, or the snapshot export when annotations are needed (ground truth) or the version id
        has a comma (the listing joins the versions with commas)."""
        if self.options.tasks == "ground-truth" or "," in self.version.id:
            return self.client.pull_project(self.options.project, progress=self.options.progress)
        return self.client.list_tasks(self.options.project)

    def _render(self, task: dict) -> tuple[str, list]:
        return render(self.version, self.schema_plan, task, self.predictor.media)

    def _scan(self, plan: RunPlan, tasks: list[dict]) -> None:
        """Render each task: its approximate input tokens; then which of them the cache answers
        (one lookup for them all: a few round trips, not one a task)."""
        caching = self.predictor.cache_for(self.version) is not None
        keys: dict[Any, str] = {}   # task id -> its cache key, for the first task of each request
        seen: set[str] = set()
        for task in tasks:
            try:
                system, parts = self._render(task)
            except Error as exc:
                plan.unrenderable[task["id"]] = exc.reason
                continue
            plan.approx[task["id"]] = approx_tokens(system, parts, self.schema_plan.schema)
            if not caching:
                continue
            key = self.predictor.request_key(self.version, self.schema_plan, self.provider, system, parts)
            if key in seen:   # a repeat of an earlier task's request: a hit once that one is answered
                plan.cached.add(task["id"])
                continue
            seen.add(key)
            keys[task["id"]] = key
        held = self.predictor.cached_keys(self.version, list(keys.values()))
        plan.cached.update(i for i, k in keys.items() if k in held)

    def _measure(self, plan: RunPlan, all_tasks: dict) -> tuple[float | None, float | None, list[str]]:
        """(input calibration ratio, output tokens per call, how): the output from the ledger, else from a
        sample; the input ratio from the ledger's calls on this project's tasks, else from a sample."""
        recs = [r for r in self.ledger.records(self.version.id) if r.status == "ok" and not r.cached]
        if not recs:
            return self._sample(plan)
        out = sum(r.output_tokens for r in recs) / len(recs)
        how = [f"output: {out:.1f} tokens a call, the average of {len(recs)} earlier successful call(s) of "
               f"{self.version.id} in the usage ledger"]
        ratio, line = self._ledger_ratio([r for r in recs if r.project == self.project], all_tasks)
        if ratio is not None or self.options.estimate_sample == 0:
            return ratio, out, [line, *how]
        ratio, _, sampled = self._sample(plan)  # calibrate the input on this project's tasks
        return ratio, out, [h for h in sampled if not h.startswith("output:")] + how

    def _ledger_ratio(self, recs: list, all_tasks: dict) -> tuple[float | None, str]:
        latest = {r.task_id: r for r in recs if r.task_id in all_tasks}  # the newest call per task
        pairs = []
        for task_id, rec in list(latest.items())[-CALIBRATION_TASKS:]:
            try:
                system, parts = self._render(all_tasks[task_id])
            except Error:
                continue
            pairs.append((rec.input_tokens, approx_tokens(system, parts, self.schema_plan.schema)))
        if not pairs or not sum(a for _, a in pairs):
            return None, "input: not calibrated (no earlier call of this version on this project's tasks)"
        ratio = sum(m for m, _ in pairs) / sum(a for _, a in pairs)
        return ratio, f"input: x{ratio:.2f}, measured/approximated tokens of {len(pairs)} earlier call(s) in the ledger"

    def _sample(self, plan: RunPlan) -> tuple[float | None, float | None, list[str]]:
        """Make up to ``estimate_sample`` real calls on a seeded sample of the uncached tasks."""
        candidates = [t for t in plan.todo if t["id"] in plan.approx and t["id"] not in plan.cached]
        k = min(self.options.estimate_sample, len(candidates))
        if k == 0:
            reason = "--estimate-sample 0" if candidates else "no call to make"
            return None, None, [f"output: unknown: no earlier call of {self.version.id} in the ledger ({reason})"]
        picked = sorted(random.Random(self.options.seed).sample(candidates, k), key=lambda t: t["id"])
        plan.sample = self.predictor.predict(picked, plan.label_config, self.version.id, project=self.project)
        cost = usd_text(cost_usd(spent(plan.sample), self.price))
        head = f"sample: {k} real call(s) made now for this estimate, {cost} (counted in the run; answers kept)"
        measured = [(o.usage.input_tokens, o.usage.output_tokens, plan.approx[o.task_id]) for o in plan.sample
                    if o.ok and o.usage is not None and not o.cached]
        if not measured:
            return None, None, [head, "output: unknown: every sample call failed (see the log)"]
        approx = sum(a for _, _, a in measured)
        ratio = sum(i for i, _, _ in measured) / approx if approx else None
        out = sum(o for _, o, _ in measured) / len(measured)
        return ratio, out, [head, f"input: x{ratio or 1:.2f}, measured/approximated tokens of the {len(measured)} "
                                  f"successful sample call(s)", f"output: {out:.1f} tokens a call, their average"]

    def _estimate(self, plan: RunPlan, ratio: float | None, out_per_call: float | None, how: list[str]) -> Estimate:
        sampled = {o.task_id for o in plan.sample}
        done = spent(plan.sample)
        rest = [i for i in plan.approx if i not in plan.cached and i not in sampled]
        calls = self.version.confidence.calls  # consistency: k calls a task (measured ratios include them)
        est_in = done.input_tokens + round((ratio or float(calls)) * sum(plan.approx[i] for i in rest))
        est_out = None
        if out_per_call is not None or not rest:
            est_out = done.output_tokens + round((out_per_call or 0) * len(rest))
        usd = None if est_out is None else cost_usd(Usage(est_in, est_out), self.price)
        lines = [f"input tokens: ceil(characters / {CHARS_PER_TOKEN}) of each task's rendered prompt and the JSON "
                 f"schema, plus {IMAGE_TOKENS} per image", *how]
        if calls > 1:
            lines.append(f"confidence: {self.version.confidence.method}, {calls} provider calls a task "
                         f"(included above: {calls}x the cost of one answer)")
        if self.price is None:
            lines.append(f"price: unknown for model {self.version.model}: give the version a `price:` in prompts.yaml")
        else:
            lines.append(f"price: ${self.price.input:g} / ${self.price.output:g} per 1M input / output tokens")
        return Estimate(est_in, est_out, usd, lines)

    # -- the work -------------------------------------------------------------
    def execute(self, plan: RunPlan, on_chunk: Callable[[dict], None] | None = None) -> dict:
        """Predict and write every task of the plan, chunk by chunk (the sample's outcomes first);
        returns the totals."""
        totals = self.totals = new_totals(plan)  # kept up to date: what an interrupted run had written
        rest = self.rest(plan)
        size = max(1, self.options.chunk)
        self.record(plan, chunks=len(range(0, len(rest), size)) + 1, mode="in-process")
        self._write(plan.sample, totals, 0)
        for n, i in enumerate(range(0, len(rest), size), start=1):
            outcomes, written, taken, _ = predict_and_write(self.predictor, self.client, self.store,
                                                            self.options.project, self.version.id,
                                                            rest[i:i + size], plan.label_config)
            self._count(outcomes, written, taken, totals, n)
            if on_chunk is not None:
                on_chunk(totals)
        self.store.set_status(self.run_id, "finished")
        return totals

    def rest(self, plan: RunPlan) -> list[dict]:
        """The tasks still to predict after the estimate's sample."""
        sampled = {o.task_id for o in plan.sample}
        return [t for t in plan.todo if t["id"] not in sampled]

    def record(self, plan: RunPlan, chunks: int, mode: str) -> None:
        """Create the run record (``python -m scoring runs`` lists it)."""
        self.store.create(self.run_id, {
            "run_id": self.run_id, "project": self.options.project, "version": self.version.id, "source": "run",
            "tasks": self.options.tasks, "selected": plan.selected, "skipped_before": plan.skipped_existing,
            "estimate_usd": plan.estimate.usd, "chunks": chunks, "created": time.time(), "mode": mode})

    def _write(self, outcomes: list[TaskOutcome], totals: dict, n: int) -> None:
        """Write the predictions of ``outcomes`` (the estimate's sample: already predicted), except on tasks
        that meanwhile got one (under the (project, version) write lock); count them as chunk ``n``."""
        preds = [dict(p, task=o.task_id) for o in outcomes
                 if (p := self.predictor.prediction(o, self.version.id)) is not None]
        fresh, taken = write_fresh(self.client, self.store, self.options.project, self.version.id,
                                   preds, keep=True)
        self._count(outcomes, {p["task"] for p in fresh}, taken, totals, n)

    def _count(self, outcomes: list[TaskOutcome], written: set, taken: int, totals: dict, n: int) -> None:
        """Add chunk ``n`` (its outcomes, the task ids written, how many were skipped) to the totals and
        record it in the run record."""
        tally(outcomes, totals)
        predicted = len(written & {o.task_id for o in outcomes if o.ok})
        totals["skipped_existing"] += taken
        totals["predicted"] += predicted
        self.store.chunk_done(self.run_id, n, dict(counts(outcomes, self.price), skipped_existing=taken,
                                                   predicted=predicted))

    def result(self, plan: RunPlan, totals: dict) -> dict:
        """The ``--json`` document."""
        spent = Usage(totals["input_tokens"], totals["output_tokens"])
        return {"run_id": self.run_id, "project": self.options.project, "version": self.version.id,
                "tasks_selected": plan.selected, "predicted": totals["predicted"],
                "skipped_existing": totals["skipped_existing"], "failed": dict(totals["failed"]),
                "cached": totals["cached"], "provider_calls": totals["provider_calls"],
                "usd": cost_usd(spent, self.price), "input_tokens": spent.input_tokens,
                "output_tokens": spent.output_tokens, "estimate": plan.estimate.as_dict()}


def new_totals(plan: RunPlan) -> dict:
    """The run's counters before any task is done."""
    failed: Counter = Counter({"not_in_project": plan.not_found} if plan.not_found else {})
    return {"predicted": 0, "skipped_existing": plan.skipped_existing, "failed": failed, "cached": 0,
            "provider_calls": 0, "input_tokens": 0, "output_tokens": 0}


def tally(outcomes: list[TaskOutcome], totals: dict) -> None:
    """Add ``outcomes`` to the counters: cache hits, provider calls and their tokens, failures by reason."""
    c = counts(outcomes, None)
    for k in ("cached", "provider_calls", "input_tokens", "output_tokens"):
        totals[k] += c[k]
    totals["failed"].update(c["failed"])
