"""The predict path: task -> rendered prompt -> provider -> parsed answer -> regions -> prediction.

:class:`Predictor` is what the HTTP app (``/predict``) and the import job
(``backend.jobs.prelabel_tasks``) call.  For a batch it:

1. builds the label config's :class:`~backend.schema.Plan` once (schema,
   answer instructions, region builders);
2. renders each task's prompt and calls the version's provider, up to
   ``PREDICT_CONCURRENCY`` calls at a time;
3. turns each answer into Label Studio regions that pass
   ``LabelInterface.validate_prediction``;
4. records tokens, USD cost, latency, status and what the answer lost or had
   guessed (dropped regions per kind, repairs, short notes; also logged, one
   warning line per task) per (version, task) in the usage ledger as soon as
   each task finishes (from its worker thread), so a backend killed mid-batch
   loses at most the records of the calls in flight.

Before calling the provider it asks the response cache (:mod:`backend.cache`; unless
``RESPONSE_CACHE=off``, the version says ``cache: false`` or the caller passed ``cache=None``):
a hit is used as the answer, costs nothing and is recorded as ``cached`` with the USD it saved;
an answer that became a valid prediction is stored.  Errors are never stored.

One bad task never fails the batch.  A task that cannot be labelled (not a JSON
object: ``invalid_task``; missing data field, invalid or refused or truncated
answer, provider error, or the ``PREDICT_DEADLINE`` passed before its turn) is recorded in the ledger with a
reason slug (``all_dropped`` when the answer named regions but every one was
dropped: passages not in the text, unknown labels...) and, by default (``FAILED_TASK_RESULT=skip``), gets *no*
prediction: its slot in the reply is an empty list, which Label Studio accepts
and which leaves the task without a prediction of this version, so the next
"Retrieve Predictions" (or opening the task) tries it again.  With
``FAILED_TASK_RESULT=empty`` it gets a prediction with an empty result instead.
Either way the reply has exactly one entry per task, in order.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Callable

from backend.cache import CachedAnswer, ResponseCache, cache_key, open_response_cache
from backend.calibration import CalibrationCache
from backend.confidence import NONE, answer_schema, assess, sampling_version, task_confidence
from backend.controls.base import describe, quality
from backend.ledger import make_record
from backend.media import MediaResolver
from backend.pricing import cost_usd, price_for
from backend.prompt import render
from backend.providers import ProviderPool
from backend.providers.base import Usage
from backend.schema import plan_for
from backend.versions import PromptVersion, VersionSet
from core.errors import Error, TaskError
from core.settings import Settings

log = logging.getLogger(__name__)
CACHE_PAUSE_S = 30.0  # a failing response cache is not asked again for this long


@dataclass
class TaskOutcome:
    """What happened to one task."""

    task_id: Any
    regions: list[dict] = field(default_factory=list)
    status: str = "ok"          # "ok" or an error reason slug (core.errors.*.reason, or "deadline")
    message: str = ""           # the user-facing reason when status != "ok"
    usage: Usage | None = None
    stats: dict = field(default_factory=dict)
    cached: bool = False        # answered by the response cache: no call, nothing spent
    saved: Usage | None = None  # cached: the tokens the original call cost
    confidence: dict = field(default_factory=dict)  # {control: raw confidence} (backend.confidence)
    samples: int = 1            # provider calls made (consistency: k)
    score: float | None = None  # the prediction's score: task confidence, calibrated when a map exists

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Predictor:
    def __init__(
        self,
        settings: Settings,
        versions: VersionSet,
        ledger=None,
        provider_factory: Callable | None = None,
        clock: Callable[[], float] = time.monotonic,
        cache: ResponseCache | None | str = "auto",
    ):
        self.settings = settings
        self.versions = versions
        self.ledger = ledger
        self.provider_factory = provider_factory or ProviderPool().provider  # one pool: clients, format memory
        self.media = MediaResolver(settings)
        self.clock = clock
        self._ledger_lock = threading.Lock()
        self._cache = cache  # "auto": open_response_cache(settings) on first use
        self._cache_lock = threading.Lock()
        self._cache_paused_until = 0.0
        self.calibrations = CalibrationCache(settings)

    # -- the response cache ---------------------------------------------------
    @property
    def cache(self) -> ResponseCache | None:
        """The response cache (opened from the settings on first use), or None when off."""
        with self._cache_lock:
            if self._cache == "auto":
                try:
                    self._cache = open_response_cache(self.settings)
                except Error as exc:
                    log.warning("response cache off: %s", exc)
                    self._cache = None
            return self._cache  # type: ignore[return-value]

    def cache_for(self, version: PromptVersion) -> ResponseCache | None:
        """The cache ``version`` uses: None when the version says ``cache: false`` or the cache is off."""
        return self.cache if version.cache and version.confidence.cacheable else None

    def cache_call(self, fn: Callable, *args):
        """``fn(*args)`` on the cache; a failing cache counts as a miss (never fails a task) and is
        left alone for ``CACHE_PAUSE_S`` seconds (one warning, not one per task)."""
        if self.clock() < self._cache_paused_until:
            return None
        try:
            return fn(*args)
        except Exception as exc:
            self._cache_paused_until = self.clock() + CACHE_PAUSE_S
            log.warning("response cache: %s failed (%s: %s); not used for %g s, the provider answers",
                        fn.__name__, type(exc).__name__, exc, CACHE_PAUSE_S)
            return None

    def cached_keys(self, version: PromptVersion, keys: list[str]) -> set[str]:
        """Which of these cache ``keys`` (:meth:`request_key`) the cache answers, in a few round trips;
        no provider call (empty when ``version`` has no cache, or the cache fails)."""
        cache = self.cache_for(version)
        if cache is None or not keys:
            return set()
        return self.cache_call(cache.holds, keys) or set()

    def request_key(self, version: PromptVersion, plan, provider, system: str, parts: list) -> str:
        """The cache key of this request: the one :meth:`ask` looks up."""
        return cache_key(provider, system, parts, answer_schema(version.confidence, plan), plan.schema_name)

    def ask(self, version: PromptVersion, plan, provider, prompt: tuple[str, list],
            outcome: TaskOutcome, deadline: float | None = None) -> tuple[dict, tuple | None]:
        """The answer to ``prompt`` (system text, user parts) from the cache or the provider, and
        ``(cache, key, answer)`` to store once the answer proved valid (None: nothing to store).
        Fills ``outcome.usage``/``cached``/``saved``."""
        system, parts = prompt
        cache = self.cache_for(version)
        schema = answer_schema(version.confidence, plan)  # verbalized: plus the answer_confidence key
        key = self.request_key(version, plan, provider, system, parts) if cache is not None else None
        hit = self.cache_call(cache.get, key) if cache is not None else None
        if hit is not None:
            outcome.cached, outcome.saved = True, Usage(hit.input_tokens, hit.output_tokens)
            return self.assessed(version, plan, hit, outcome), None
        completion = provider.complete(system=system, parts=parts, schema=schema, schema_name=plan.schema_name,
                                       deadline=deadline)  # waiting for the limits (backend.limits) ends here
        outcome.usage = completion.usage
        store = None
        if cache is not None:
            u = completion.usage
            store = (cache, key, CachedAnswer(completion.data, completion.raw, u.input_tokens, u.output_tokens))
        request = (system, parts, schema, plan.schema_name, deadline)
        sample = partial(self.sample, version, provider, request)
        return self.assessed(version, plan, completion, outcome, sample), store

    # -- confidence (backend.confidence) -----------------------------------------
    def assessed(self, version: PromptVersion, plan, answer, outcome: TaskOutcome, sample=None) -> dict:
        """The answer to turn into regions; fills ``outcome.confidence``/``samples`` and adds the extra
        calls' tokens (consistency) to ``outcome.usage``."""
        done = assess(version.confidence, plan, answer, sample)
        outcome.confidence, outcome.samples = done.confidence, done.samples
        for u in done.extra or []:
            if u is not None:
                base = outcome.usage or Usage()
                outcome.usage = Usage(base.input_tokens + u.input_tokens, base.output_tokens + u.output_tokens,
                                      base.latency_s + u.latency_s)
        return done.data

    def sample(self, version: PromptVersion, provider, request: tuple, i: int) -> tuple[dict | None, Usage | None]:
        """Extra call ``i`` for ``consistency``: (its answer or None when it failed, its usage)."""
        system, parts, schema, schema_name, deadline = request
        sampler = self.provider_factory(sampling_version(version, type(provider).Options, i), self.settings)
        try:  # through the same limits as the first call (shared per model), within the same deadline
            done = sampler.complete(system=system, parts=parts, schema=schema, schema_name=schema_name,
                                    deadline=deadline)
            return done.data, done.usage
        except Error as exc:
            return None, getattr(exc, "usage", None)

    def score(self, version: PromptVersion, project: str | None, outcomes: list[TaskOutcome]) -> None:
        """Set each outcome's ``score``: its task confidence through the (version, project) calibration map."""
        if version.confidence.method == NONE:
            return
        cmap = self.calibrations.get(version.id, project)
        for o in outcomes:
            raw = task_confidence(o.confidence)
            o.score = None if raw is None else round(cmap(raw) if cmap is not None else raw, 6)

    # -- one task -------------------------------------------------------------
    def predict_one(self, version: PromptVersion, plan, provider, task: Any,
                    deadline: float | None = None) -> TaskOutcome:
        """Label one task; ``deadline`` (a ``time.monotonic()`` timestamp) also ends its image fetches."""
        if not isinstance(task, dict):  # e.g. 42, null or "abc" among the tasks: this task only
            outcome = TaskOutcome(task_id=None, status="invalid_task",
                                  message=f"the task is a JSON {type(task).__name__}, not an object "
                                  'such as {"id": 1, "data": {...}}; it gets no prediction')
            log.warning("version %s: %s", version.id, outcome.message)
            return outcome
        outcome = TaskOutcome(task_id=task.get("id"))
        try:
            system, parts = render(version, plan, task, self.media, deadline=deadline)
            data, store = self.ask(version, plan, provider, (system, parts), outcome, deadline)
            regions, stats = plan.to_result(data, task.get("data") or {})
            outcome.regions, outcome.stats = regions, stats
            if store is not None:  # a valid answer: worth keeping
                self.cache_call(store[0].put, store[1], store[2])
        except TaskError as exc:
            outcome.status, outcome.message = exc.reason, str(exc)
            outcome.usage = exc.usage or outcome.usage
            outcome.stats = getattr(exc, "stats", None) or outcome.stats  # all_dropped: what was dropped
        except Error as exc:  # a config-level error surfaced while handling this task
            outcome.status, outcome.message = exc.reason, str(exc)
        except Exception as exc:  # a bug must not cost the rest of the batch
            log.exception("task %s: unexpected error", outcome.task_id)
            outcome.status, outcome.message = "internal", f"internal error: {type(exc).__name__}: {exc}"
        if not outcome.ok:
            log.warning("task %s, version %s: %s (%s)", outcome.task_id, version.id, outcome.message, outcome.status)
        elif describe(outcome.stats):  # kept with some regions dropped or repaired: one line naming them
            log.warning("task %s, version %s: %s", outcome.task_id, version.id, describe(outcome.stats))
        return outcome

    def cannot_run(self, version: PromptVersion) -> str | None:
        """Why ``version`` cannot run here (its provider's key is not set, or its provider
        cannot be built), or None when it can.  Offline: no call is made."""
        try:
            provider = self.provider_factory(version, self.settings)
        except Error as exc:
            return str(exc)
        if provider.api_key() is None:
            return f"{provider.key_env} is not set; set it in the ML backend's environment and restart it"
        return None

    # -- a batch --------------------------------------------------------------
    def predict(
        self, tasks: list, label_config: str, version_id: str | None, project: str | None = None,
        on_outcome: Callable[[TaskOutcome], None] | None = None,
    ) -> list[TaskOutcome]:
        """Label every task; always returns one outcome per task, in order.

        Each task's usage record is written as soon as the task finishes (a backend killed
        mid-batch loses at most the calls in flight), and ``on_outcome(outcome)`` is called
        then, scored, from the worker thread (a run writes predictions while it predicts).
        Raises only ConfigError (unknown version, unusable label config): those concern the
        whole request, not one task.
        """
        version = self.versions.get(version_id)
        plan = plan_for(label_config)
        provider = self.provider_factory(version, self.settings)
        batch = _Batch(self, version, project, tasks, deadline=self.clock() + self.settings.predict_deadline,
                       on_outcome=on_outcome)

        def run(i: int) -> None:
            if not batch.claim(i):
                return
            task = tasks[i]
            if batch.late():
                outcome = self.late_outcome(task)
            else:  # image fetches stop when the request's deadline passes (monotonic clock, like the fetcher's)
                outcome = self.predict_one(version, plan, provider, task, time.monotonic() + batch.left())
            batch.finish(i, outcome)

        if len(tasks) == 1:
            run(0)
        else:
            pool = ThreadPoolExecutor(max_workers=self.settings.predict_concurrency, thread_name_prefix="predict")
            futures = [pool.submit(run, i) for i in range(len(tasks))]
            wait(futures, timeout=batch.left() + 3.0)  # calls in flight get 3 s more
            pool.shutdown(wait=False, cancel_futures=True)
        done = batch.close()
        n_bad = sum(not o.ok for o in done)
        log.info("version %s: %d tasks, %d labelled, %d without prediction",
                 version.id, len(done), len(done) - n_bad, n_bad)
        return done

    def late_outcome(self, task: Any) -> TaskOutcome:
        return TaskOutcome(
            task_id=_task_id(task), status="deadline",
            message=f"not started: PREDICT_DEADLINE ({self.settings.predict_deadline:g} s) passed; "
            "run Retrieve Predictions again to label the rest",
        )

    def prediction(self, outcome: TaskOutcome, version_id: str) -> dict | None:
        """The Label Studio prediction for one outcome, or None when the task gets none
        (it failed and ``FAILED_TASK_RESULT=skip``)."""
        if outcome.ok or self.settings.failed_task_result == "empty":
            return {"result": outcome.regions, "score": outcome.score, "model_version": version_id}
        return None

    def to_ls_results(self, outcomes: list[TaskOutcome], version_id: str) -> list:
        """The ``results`` list of a ``/predict`` reply: one entry per task, in order
        (``[]`` for a task without a prediction; Label Studio will ask again)."""
        return [self.prediction(o, version_id) or [] for o in outcomes]

    def record(self, version: PromptVersion, project: str | None, outcomes: list[TaskOutcome]) -> None:
        """Write the usage records of ``outcomes`` (serialised: any ledger is safe to use)."""
        if self.ledger is None or not outcomes:
            return
        now = time.time()
        recs = [replace(make_record(version, o.task_id, project, o.usage, o.status, ts=now), **quality(o.stats),
                        confidence=o.confidence, samples=o.samples)
                for o in outcomes]  # with what each answer lost or had guessed, and its confidence
        for rec, o in zip(recs, outcomes, strict=True):
            if o.cached:
                rec.cached, rec.usd, rec.saved_usd = True, 0.0, cost_usd(o.saved, price_for(version))
        try:
            with self._ledger_lock:
                self.ledger.record_many(recs)
        except Exception:  # the ledger must never cost the user their predictions
            log.exception("could not write %d usage records to the ledger", len(recs))


class _Batch:
    """The outcomes of one batch, filled by the worker threads.

    A task is *claimed* once: by the worker that starts it, or, past the deadline, by
    :meth:`close` (it then never starts).  Whoever claims it records it, so a task is
    recorded exactly once: a worker records its task as soon as it finishes.
    """

    def __init__(self, predictor: Predictor, version: PromptVersion, project: str | None, tasks: list, deadline: float,
                 on_outcome: Callable[[TaskOutcome], None] | None = None):
        self.predictor, self.version, self.project, self.tasks = predictor, version, project, tasks
        self.deadline, self.on_outcome = deadline, on_outcome
        self.outcomes: list[TaskOutcome | None] = [None] * len(tasks)
        self.claimed = [False] * len(tasks)
        self.lock = threading.Lock()

    def left(self) -> float:
        return max(0.0, self.deadline - self.predictor.clock())

    def late(self) -> bool:
        return self.predictor.clock() > self.deadline

    def claim(self, i: int) -> bool:
        with self.lock:
            if self.claimed[i]:
                return False
            self.claimed[i] = True
            return True

    def finish(self, i: int, outcome: TaskOutcome) -> None:
        """Score and record one task's outcome; keep it and hand it to ``on_outcome`` unless the
        batch was closed without it (it ran past the deadline: its usage is still recorded)."""
        self.predictor.score(self.version, self.project, [outcome])
        with self.lock:
            in_time = self.outcomes[i] is None
            if in_time:
                self.outcomes[i] = outcome
        self.predictor.record(self.version, self.project, [outcome])
        if in_time and self.on_outcome is not None:
            self.on_outcome(outcome)

    def close(self) -> list[TaskOutcome]:
        """One outcome per task: tasks never started are claimed (and recorded) here; tasks
        still running past the deadline are answered "deadline" and recorded when they end."""
        with self.lock:
            unstarted = [i for i, c in enumerate(self.claimed) if not c]
            for i in unstarted:
                self.claimed[i] = True
            fresh = set(unstarted)
            running = [i for i, o in enumerate(self.outcomes) if o is None and i not in fresh]
        for i in unstarted:
            self.finish(i, self.predictor.late_outcome(self.tasks[i]))
        with self.lock:
            for i in running:
                if self.outcomes[i] is None:
                    self.outcomes[i] = TaskOutcome(task_id=_task_id(self.tasks[i]), status="deadline",
                                                   message="PREDICT_DEADLINE passed")
            return list(self.outcomes)  # type: ignore[arg-type]


def _task_id(task: Any) -> Any:
    """A task's ``id``; None for a task that is not a JSON object."""
    return task.get("id") if isinstance(task, dict) else None
