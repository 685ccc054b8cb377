"""The predict path: task -> rendered prompt -> provider -> parsed answer -> regions -> prediction.

:class:`Predictor` is what the HTTP app (``/predict``) and the import job
(``backend.jobs.prelabel_tasks``) call.  For a batch it:

1. builds the label config's :class:`~backend.schema.Plan` once (schema,
   answer instructions, region builders);
2. renders each task's prompt and calls the version's provider, up to
   ``PREDICT_CONCURRENCY`` calls at a time;
3. turns each answer into Label Studio regions that pass
   ``LabelInterface.validate_prediction``;
4. records tokens, USD cost, latency and status per (version, task) in the
   usage ledger.

One bad task never fails the batch.  A task that cannot be labelled (missing
data field, invalid or refused or truncated answer, provider error, or the
``PREDICT_DEADLINE`` passed before its turn) is recorded in the ledger with a
reason slug and, by default (``FAILED_TASK_RESULT=skip``), gets *no*
prediction: its slot in the reply is an empty list, which Label Studio accepts
and which leaves the task without a prediction of this version, so the next
"Retrieve Predictions" (or opening the task) tries it again.  With
``FAILED_TASK_RESULT=empty`` it gets a prediction with an empty result instead.
Either way the reply has exactly one entry per task, in order.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable

from core.errors import Error, TaskError
from backend.ledger import make_record
from backend.media import MediaResolver
from backend.prompt import render
from backend.providers import ProviderPool
from backend.providers.base import Usage
from backend.schema import plan_for
from core.settings import Settings
from backend.versions import PromptVersion, VersionSet

log = logging.getLogger(__name__)


@dataclass
class TaskOutcome:
    """What happened to one task."""

    task_id: Any
    regions: list[dict] = field(default_factory=list)
    status: str = "ok"          # "ok" or an error reason slug (core.errors.*.reason, or "deadline")
    message: str = ""           # the user-facing reason when status != "ok"
    usage: Usage | None = None
    stats: dict = field(default_factory=dict)

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
    ):
        self.settings = settings
        self.versions = versions
        self.ledger = ledger
        self.provider_factory = provider_factory or ProviderPool().provider  # one pool: clients, format memory
        self.media = MediaResolver(settings)
        self.clock = clock

    # -- one task -------------------------------------------------------------
    def predict_one(self, version: PromptVersion, plan, provider, task: dict) -> TaskOutcome:
        outcome = TaskOutcome(task_id=task.get("id"))
        try:
            system, parts = render(version, plan, task, self.media)
            completion = provider.complete(system=system, parts=parts, schema=plan.schema, schema_name=plan.schema_name)
            outcome.usage = completion.usage
            regions, stats = plan.to_result(completion.data, task.get("data") or {})
            outcome.regions, outcome.stats = regions, stats
        except TaskError as exc:
            outcome.status, outcome.message = exc.reason, str(exc)
            outcome.usage = exc.usage or outcome.usage
        except Error as exc:  # a config-level error surfaced while handling this task
            outcome.status, outcome.message = exc.reason, str(exc)
        except Exception as exc:  # a bug must not cost the rest of the batch
            log.exception("task %s: unexpected error", outcome.task_id)
            outcome.status, outcome.message = "internal", f"internal error: {type(exc).__name__}: {exc}"
        if not outcome.ok:
            log.warning("task %s, version %s: %s (%s)", outcome.task_id, version.id, outcome.message, outcome.status)
        return outcome

    # -- a batch --------------------------------------------------------------
    def predict(self, tasks: list[dict], label_config: str, version_id: str | None, project: str | None = None) -> list[TaskOutcome]:
        """Label every task; always returns one outcome per task, in order.

        Raises only ConfigError (unknown version, unusable label config): those
        concern the whole request, not one task.
        """
        version = self.versions.get(version_id)
        plan = plan_for(label_config)
        provider = self.provider_factory(version, self.settings)
        deadline = self.clock() + self.settings.predict_deadline
        outcomes: list[TaskOutcome | None] = [None] * len(tasks)

        def run(i: int, task: dict) -> None:
            if self.clock() > deadline:
                outcomes[i] = TaskOutcome(
                    task_id=task.get("id"),
                    status="deadline",
                    message=f"not started: PREDICT_DEADLINE ({self.settings.predict_deadline:g} s) passed; "
                    "run Retrieve Predictions again to label the rest",
                )
                return
            outcomes[i] = self.predict_one(version, plan, provider, task)

        if len(tasks) == 1:
            run(0, tasks[0])
        else:
            pool = ThreadPoolExecutor(max_workers=self.settings.predict_concurrency, thread_name_prefix="predict")
            futures = [pool.submit(run, i, t) for i, t in enumerate(tasks)]
            wait(futures, timeout=max(0.0, deadline - self.clock()) + 3.0)  # calls in flight get 3 s more
            pool.shutdown(wait=False, cancel_futures=True)
        for i, task in enumerate(tasks):
            if outcomes[i] is None:  # still running past the deadline: abandon, the reply must go out
                outcomes[i] = TaskOutcome(task_id=task.get("id"), status="deadline", message="PREDICT_DEADLINE passed")
        done: list[TaskOutcome] = outcomes  # every slot is filled now
        self._record(version, project, done)
        n_bad = sum(not o.ok for o in done)
        log.info("version %s: %d tasks, %d labelled, %d without prediction", version.id, len(done), len(done) - n_bad, n_bad)
        return done

    def prediction(self, outcome: TaskOutcome, version_id: str) -> dict | None:
        """The Label Studio prediction for one outcome, or None when the task gets none
        (it failed and ``FAILED_TASK_RESULT=skip``)."""
        if outcome.ok or self.settings.failed_task_result == "empty":
            return {"result": outcome.regions, "score": None, "model_version": version_id}
        return None

    def to_ls_results(self, outcomes: list[TaskOutcome], version_id: str) -> list:
        """The ``results`` list of a ``/predict`` reply: one entry per task, in order
        (``[]`` for a task without a prediction; Label Studio will ask again)."""
        return [self.prediction(o, version_id) or [] for o in outcomes]

    def _record(self, version: PromptVersion, project: str | None, outcomes: list[TaskOutcome]) -> None:
        if self.ledger is None:
            return
        now = time.time()
        recs = [make_record(version, o.task_id, project, o.usage, o.status, ts=now) for o in outcomes]
        try:
            self.ledger.record_many(recs)
        except Exception:  # the ledger must never cost the user their predictions
            log.exception("could not write %d usage records to the ledger", len(recs))
