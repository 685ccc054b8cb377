"""The Label Studio edge: every call the worker makes to Label Studio goes through here.

``LabelStudioClient(settings)`` wraps ``label_studio_sdk.LabelStudio`` (the key is
passed explicitly; the SDK's own import-time environment default is never used)
and gives the scoring jobs and the pre-label job the few operations they need::

    client = LabelStudioClient(settings)
    tasks, label_config = client.pull_project(7)            # snapshot export, full predictions
    client.tasks_by_ids(7, [41, 42])                        # listed, not opened (no /predict call)
    client.import_predictions(7, preds, chunk=1000)         # bulk, chunked
    client.model_version_counts(7)                          # {"v-good": 19, ...}
    client.delete_model_version(7, "old")                   # bulk delete of one version
    client.task_url(7, 42)                                  # for reports

Failure behaviour: a connection error, a timeout, HTTP 429 or a 5xx is retried with
exponential backoff (``attempts`` tries in all), then ``LabelStudioError`` is raised
naming the URL and what was being done -- never the API key (every message is
scrubbed of the configured secrets).  A 4xx other than 429 is not retried: it
means the request itself is wrong (bad key, unknown project), and the message
says what to fix.

Label Studio facts this module relies on (measured on 1.23.2, see
``tests/test_labelstudio_client.py``): ``DELETE /api/projects/{id}/model-versions/``
deletes one version's predictions in bulk, and *also resets the project's
``model_version`` to none* when it deleted the current one or when the current
one is an ML backend's title -- ``delete_model_version`` therefore puts the
project's model version back unless it named the deleted version.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Iterable

import httpx

from core.dataviews import DataViewsMixin
from core.errors import ConfigError, LabelStudioError
from core.secrets import mask
from core.settings import Settings

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
DELETE_WORKERS = 4  # per-id deletes at a time (1.23.2: about 80 ms each one by one, 40 ms with 4, 60 with 8)
# Full predictions (the point); drafts as ids and no annotation history (not needed, about 20% faster).
EXPORT_OPTIONS = {"predictions": {"only_id": False}, "drafts": {"only_id": True},
                  "annotations__completed_by": {"only_id": True}, "include_annotation_history": False}


def label_studio_task_url(base_url: str, project_id) -> Callable[[object], str]:
    """``task_id -> link`` that opens a task of the project in Label Studio's labelling view
    (the ``task_url`` of ``scoring.report_html.render_html``).

    >>> label_studio_task_url("http://127.0.0.1:8080/", 3)(42)
    'http://127.0.0.1:8080/projects/3/data?task=42'
    """
    base = base_url.rstrip("/")
    return lambda task_id: f"{base}/projects/{project_id}/data?task={task_id}"


LIST_FIELDS = "id,data,predictions_model_versions"   # what list_tasks asks the Data Manager for
LIST_PAGE = 5000


def model_versions(value: Any) -> list[str]:
    """A Data Manager ``predictions_model_versions`` as a list: an array on PostgreSQL, one
    comma-joined string on SQLite (so a version id with a comma cannot be told apart there).

    >>> model_versions("v1,v10"), model_versions(["v1"]), model_versions(""), model_versions(None)
    (['v1', 'v10'], ['v1'], [], [])
    """
    if isinstance(value, list):
        return [str(v) for v in value if v is not None]
    return str(value).split(",") if value else []


def _as_dict(obj: Any) -> dict:
    """An SDK model (pydantic) or a plain dict as a dict."""
    if isinstance(obj, dict):
        return obj
    dump = getattr(obj, "model_dump", None) or getattr(obj, "dict", None)
    return dict(dump()) if callable(dump) else dict(vars(obj))


class _Gone(Exception):
    """The thing to delete is not there (any more)."""


class _HTTPStatus(Exception):
    """A non-2xx answer of a raw request (converted like the SDK's ApiError)."""

    def __init__(self, status_code: int, body: Any):
        super().__init__(status_code)
        self.status_code, self.body = status_code, body


def _status_of(exc: BaseException) -> int | None:
    from label_studio_sdk.core.api_error import ApiError

    if isinstance(exc, (ApiError, _HTTPStatus)):
        return exc.status_code
    return None


def _body_summary(exc: BaseException, limit: int = 200) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        body = body.get("detail") or body.get("validation_errors") or body
    text = body if isinstance(body, str) else json.dumps(body, default=str)
    text = " ".join(str(text).split())
    return text[:limit] + ("…" if len(text) > limit else "")


class LabelStudioClient(DataViewsMixin):
    """The scoring worker's client for one Label Studio (``settings.label_studio_url``).

    Data Manager tabs (``views``, ``upsert_view``, ``view_tasks`` ...) come from ``core.dataviews``.

    ``attempts`` tries per call in all, sleeping ``backoff * 2**i`` seconds between
    them (0.5, 1, 2 s by default); ``timeout`` seconds per HTTP request.
    """

    def __init__(self, settings: Settings, *, attempts: int = 4, backoff: float = 0.5, timeout: float = 120.0,
                 sleep: Callable[[float], None] = time.sleep):
        if not settings.label_studio_url or not settings.label_studio_api_key:
            raise ConfigError("talking to Label Studio (scoring, pre-labelling on import) needs LABEL_STUDIO_URL "
                              "(e.g. http://localhost:8080) and LABEL_STUDIO_API_KEY "
                              "(Account & Settings → Access Token)")
        from label_studio_sdk import LabelStudio

        self.url = settings.label_studio_url.rstrip("/")
        self._secrets = [s for s in settings.secrets() if s]
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self._sleep = sleep
        # max_retries=0: this class owns retrying, so that every failure ends in one clear error.
        self.sdk = LabelStudio(base_url=self.url, api_key=settings.label_studio_api_key, timeout=timeout, max_retries=0)

    # ------------------------------------------------------------------ plumbing
    def _scrub(self, text: str) -> str:
        return mask(text, self._secrets)

    def _call(self, what: str, fn: Callable, *args, **kwargs):
        """Run ``fn`` with retries; translate every failure into ``LabelStudioError``."""
        last = ""
        for attempt in range(self.attempts):
            try:
                return fn(*args, **kwargs)
            except httpx.TransportError as exc:  # refused, reset, timed out, ...
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            except Exception as exc:
                status = _status_of(exc)
                if status is None:
                    raise
                if status not in RETRY_STATUS:
                    raise LabelStudioError(self._scrub(self._client_error(what, status, exc)), status=status) from None
                last = f"HTTP {status}: {_body_summary(exc)}"
            if attempt < self.attempts - 1:
                delay = self.backoff * (2 ** attempt)
                log.warning("Label Studio at %s: %s failed (%s); retrying in %.1fs",
                            self.url, what, self._scrub(last), delay)
                self._sleep(delay)
        raise LabelStudioError(self._scrub(
            f"Label Studio at {self.url} did not answer properly ({what}) after {self.attempts} attempts: {last}. "
            "Check that it is running and reachable from here (LABEL_STUDIO_URL)")) from None

    def _client_error(self, what: str, status: int, exc: BaseException) -> str:
        if status in (401, 403):
            return (f"Label Studio at {self.url} refused the API key ({what}: HTTP {status}); set LABEL_STUDIO_API_KEY "
                    "to a valid access token of a user who can see the project")
        if status == 404:
            return f"Label Studio at {self.url}: {what}: not found (HTTP 404); check the project id"
        return f"Label Studio at {self.url}: {what} was refused (HTTP {status}): {_body_summary(exc)}"

    def _raw(self, method: str, path: str, *, json_body: Any = None, params: dict | None = None) -> Any:
        """One raw API request through the SDK's HTTP client (auth headers included); returns parsed JSON."""
        response = self.sdk._client_wrapper.httpx_client.request(
            path, method=method, json=json_body, params=params, request_options={"max_retries": 0})
        if not 200 <= response.status_code < 300:
            try:
                body = response.json()
            except ValueError:
                body = response.text
            raise _HTTPStatus(response.status_code, body)
        if not response.content:
            return None
        return response.json()

    # ------------------------------------------------------------------ reads
    def project(self, project_id: int) -> dict:
        """Project fields the scorer uses: ``id``, ``title``, ``label_config``, ``model_version``, ``task_number``."""
        p = self._call(f"reading project {project_id}", self.sdk.projects.get, int(project_id))
        return {"id": p.id, "title": p.title, "label_config": p.label_config,
                "model_version": getattr(p, "model_version", None), "task_number": getattr(p, "task_number", None)}

    def label_config(self, project_id: int) -> str:
        """The project's labelling configuration (XML)."""
        return self.project(project_id)["label_config"] or ""

    def count_tasks(self, project_id: int) -> int:
        """How many tasks the project has."""
        return int(self.project(project_id)["task_number"] or 0)

    def tasks_by_ids(self, project_id: int, task_ids: Iterable[int]) -> list[dict]:
        """The tasks with these ids as ``{"id", "data", "predictions"}`` (predictions as dicts), in one listing.

        Listed through the Data Manager (``selectedItems``), never opened one by one:
        opening a task through the API (``tasks.get``) makes Label Studio call the ML
        backend's ``/predict`` for it.  Ids that are not (any more) in the project are absent.
        """
        ids = [int(i) for i in task_ids]
        if not ids:
            return []
        query = json.dumps({"selectedItems": {"all": False, "included": ids}})

        def run():
            listing = self.sdk.tasks.list(project=int(project_id), fields="all", query=query, page_size=len(ids))
            return [{"id": t.id, "data": t.data,
                     "predictions": [_as_dict(p) for p in getattr(t, "predictions", None) or []]} for t in listing]
        return self._call(f"listing {len(ids)} tasks of project {project_id}", run)

    def tasks_with_version(self, project_id: int, task_ids: Iterable[int], model_version: str) -> set[int]:
        """Which of these tasks already have a prediction of ``model_version``.

        Asks the Data Manager for just those tasks among ``task_ids`` (a ``predictions_model_versions``
        filter), so the answer costs what it finds: a listing of every task costs about 3 ms a task
        (measured on 1.23.2 at 10,000 tasks), this about 0.1 s when none has one.  The filter matches
        a version that *contains* ``model_version`` (``v1`` finds ``v10`` too), so what it finds is
        listed in full and checked exactly.
        """
        ids = [int(i) for i in task_ids]
        if not ids:
            return set()
        query = json.dumps({"selectedItems": {"all": False, "included": ids},
                            "filters": {"conjunction": "and", "items": [
                                {"filter": "filter:tasks:predictions_model_versions", "operator": "contains",
                                 "type": "List", "value": [model_version]}]}})

        def run():
            return [t.id for t in self.sdk.tasks.list(project=int(project_id), query=query, page_size=len(ids))]
        found = self._call(f"finding predictions of {model_version!r} among {len(ids)} tasks of project "
                           f"{project_id}", run)
        return {t["id"] for t in self.tasks_by_ids(project_id, found)
                if any(p.get("model_version") == model_version for p in t["predictions"])}

    def list_tasks(self, project_id: int) -> tuple[list[dict], str]:
        """Every task of a project as ``{"id", "data", "predictions": [{"model_version"}]}`` (only the
        versions of its predictions), and the label config: a Data Manager listing of just those
        fields, in pages of ``LIST_PAGE`` (ordered by id).  ``bench/bench_ls_import.py``, 1.23.2, 10,000
        tasks: 2.3-2.8 s, against 5.9-7.9 s for :meth:`pull_project`'s snapshot export (full annotations
        and predictions).
        A version id with a comma is ambiguous here (see :func:`model_versions`): use pull_project."""
        config, pid = self.label_config(project_id), int(project_id)
        tasks: dict[int, dict] = {}
        page, total = 1, 1
        while len(tasks) < total:
            try:
                body = self._call(f"listing the tasks of project {pid} (page {page})", self._raw, "GET",
                                  "api/tasks/", params={"project": pid, "page": page, "page_size": LIST_PAGE,
                                                        "fields": "all", "include": LIST_FIELDS})
            except LabelStudioError as exc:
                if page > 1 and exc.status == 404:   # the project shrank while it was listed: no such page
                    break
                raise
            listed, total = body.get("tasks") or [], int(body.get("total") or 0)
            for t in listed:
                tasks[t["id"]] = {"id": t["id"], "data": t.get("data") or {}, "predictions": [
                    {"model_version": v} for v in model_versions(t.get("predictions_model_versions"))]}
            if not listed:
                break
            page += 1
        return list(tasks.values()), config

    def pull_project(self, project_id: int, progress: bool = True) -> tuple[list[dict], str]:
        """All tasks of a project with annotations and *full* predictions, and its label config.

        Uses a snapshot export (``serialization_options={"predictions": {"only_id": False}}``),
        downloads it (a progress bar on stderr when ``progress``) and deletes the snapshot.
        """
        project = self.project(project_id)
        pid = int(project_id)
        export = self._call(f"creating a snapshot export of project {pid}", self.sdk.projects.exports.create, pid,
                            title="llm-prelabel scoring", serialization_options=EXPORT_OPTIONS)
        try:
            deadline = time.monotonic() + 600
            while export.status not in ("completed", "failed"):
                if time.monotonic() > deadline:
                    raise LabelStudioError(f"Label Studio at {self.url}: snapshot export {export.id} of project {pid} "
                                           f"still '{export.status}' after 600 s")
                time.sleep(0.2)
                export = self._call(f"polling export {export.id}", self.sdk.projects.exports.get, pid, export.id)
            if export.status == "failed":
                raise LabelStudioError(f"Label Studio at {self.url}: the snapshot export of project {pid} failed "
                                       "(see Label Studio's log)")
            raw = self._call(f"downloading export {export.id} of project {pid}", self._download, pid, export.id,
                             progress)
        finally:
            try:
                self._call(f"deleting export {export.id}", self.sdk.projects.exports.delete, pid, export.id)
            except LabelStudioError as exc:  # cleanup only: never hide the real outcome
                log.warning("%s", exc)
        try:
            tasks = json.loads(raw)
        except ValueError:
            raise LabelStudioError(f"Label Studio at {self.url}: export of project {pid} is not JSON") from None
        if not isinstance(tasks, list):
            raise LabelStudioError(f"Label Studio at {self.url}: export of project {pid} is not a list of tasks")
        return tasks, project["label_config"]

    def _download(self, pid: int, export_id: int, progress: bool) -> bytes:
        from tqdm import tqdm

        parts = []
        with tqdm(desc=f"pull project {pid}", unit="B", unit_scale=True, disable=not progress, leave=False) as bar:
            for chunk in self.sdk.projects.exports.download(pid, export_id, export_type="JSON",
                                                            request_options={"chunk_size": 1 << 16, "max_retries": 0}):
                parts.append(chunk)
                bar.update(len(chunk))
        return b"".join(parts)

    def model_version_counts(self, project_id: int) -> dict[str, int]:
        """Number of predictions per model version in the project, e.g. ``{"v-good": 19}``."""
        data = self._call(f"counting predictions of project {project_id}", self._raw,
                          "GET", f"api/projects/{int(project_id)}/model-versions/")
        return {str(k): int(v) for k, v in (data or {}).items()}

    def predictions_of_version(self, project_id: int, model_version: str) -> list[dict]:
        """Every prediction of ``model_version`` in the project as ``{"id", "task", "score", "result"}``.

        One request (``GET /api/predictions/?project=``; it lists all of the project's
        predictions, about 4.5 s for 20,000) filtered here: Label Studio cannot filter by version.
        """
        data = self._call(f"listing predictions of project {project_id}", self._raw,
                          "GET", "api/predictions/", params={"project": int(project_id)})
        return [{"id": p["id"], "task": p["task"], "score": p.get("score"), "result": p.get("result") or []}
                for p in (data or []) if p.get("model_version") == model_version]

    # ------------------------------------------------------------------ writes
    def import_predictions(self, project_id: int, preds: list[dict], chunk: int = 1000, progress: bool = False,
                           on_chunk: Callable[[int], None] | None = None) -> int:
        """Write predictions (``{"task", "model_version", "score", "result"}``) in chunks; return how many were created.

        ``on_chunk(n_written_so_far)`` is called after each chunk (progress hooks, tests).
        """
        from tqdm import tqdm

        pid, created = int(project_id), 0
        with tqdm(total=len(preds), desc=f"write predictions to project {pid}", unit="pred",
                  disable=not progress, leave=False) as bar:
            for start in range(0, len(preds), max(1, chunk)):
                part = preds[start:start + max(1, chunk)]
                res = self._call(f"importing {len(part)} predictions into project {pid}",
                                 self.sdk.projects.import_predictions, pid, request=part)
                created += int(getattr(res, "created", None) or len(part))
                bar.update(len(part))
                if on_chunk is not None:
                    on_chunk(start + len(part))
        return created

    def delete_model_version(self, project_id: int, model_version: str) -> int:
        """Delete every prediction of ``model_version`` in the project; return how many were deleted.

        Label Studio resets the project's current model version when it deletes it or when
        the current one is an ML backend's title; the previous value is put back unless it
        was the deleted version.
        """
        pid = int(project_id)
        before = self.project(pid)["model_version"]
        data = self._call(f"deleting predictions of model version '{model_version}' in project {pid}", self._raw,
                          "DELETE", f"api/projects/{pid}/model-versions/", json_body={"model_version": model_version})
        if before and before != model_version and self.project(pid)["model_version"] != before:
            self.set_model_version(pid, before)
        return int((data or {}).get("deleted_predictions", 0))

    def delete_predictions(self, prediction_ids: Iterable[int], progress: bool = False,
                           on_delete: Callable[[int], None] | None = None, workers: int = DELETE_WORKERS) -> int:
        """Delete predictions by id, ``workers`` requests at a time; return how many.

        About 80 ms each one by one on 1.23.2, 40 ms each 4 at a time.  One already gone counts as deleted (a
        rerun after a crash).  ``on_delete(n_done)`` is called after each one; the first failure is raised.
        """
        from concurrent.futures import ThreadPoolExecutor, as_completed

        from tqdm import tqdm

        ids, done = [int(i) for i in prediction_ids], 0
        with ThreadPoolExecutor(max(1, workers)) as pool, \
                tqdm(total=len(ids), desc="remove replaced predictions", unit="pred", disable=not progress,
                     leave=False) as bar:
            futures = [pool.submit(self._delete_if_there, pred_id) for pred_id in ids]
            try:
                for future in as_completed(futures):
                    future.result()
                    done += 1
                    bar.update(1)
                    if on_delete is not None:
                        on_delete(done)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return done

    def _delete_if_there(self, pred_id: int) -> None:
        try:
            self._call(f"deleting prediction {pred_id}", self._delete_one, pred_id)
        except _Gone:
            pass

    def _delete_one(self, pred_id: int) -> None:
        from label_studio_sdk.core.api_error import ApiError

        try:
            self.sdk.predictions.delete(pred_id, request_options={"max_retries": 0})
        except ApiError as exc:
            if exc.status_code == 404:
                raise _Gone() from None
            raise

    def set_model_version(self, project_id: int, model_version: str | None) -> None:
        """Make ``model_version`` the project's current one (Settings → Annotation → Prelabeling)."""
        self._call(f"setting the model version of project {project_id}", self.sdk.projects.update,
                   int(project_id), model_version=model_version or "")

    def create_annotations(self, project_id: int, items: Iterable[dict], ground_truth: bool = False,
                           progress: bool = False) -> list[int]:
        """Create one annotation per item (``{"task", "result", "parent_prediction"?}``); return their ids.

        Used for ground-truth *candidates*: ``ground_truth`` stays False until a human confirms.
        """
        from tqdm import tqdm

        items = list(items)
        ids = []
        for item in tqdm(items, desc=f"create annotations in project {project_id}", unit="task",
                         disable=not progress, leave=False):
            extra = {"parent_prediction": item["parent_prediction"]} if item.get("parent_prediction") else {}
            ann = self._call(f"creating an annotation on task {item['task']}", self.sdk.annotations.create,
                             int(item["task"]), result=item["result"], ground_truth=ground_truth, **extra)
            ids.append(ann.id)
        return ids

    def set_prediction_scores(self, scores: dict[int, float]) -> int:
        """Set the ``score`` of predictions by id (``{prediction id: score}``); returns how many were set.
        One PATCH each (about 75 ms): for re-scoring a version after calibration."""
        for pid, score in scores.items():
            self._call(f"setting the score of prediction {pid}", self.sdk.predictions.update, int(pid),
                       score=float(score))
        return len(scores)

    def delete_annotations(self, annotation_ids: Iterable[int]) -> int:
        """Delete annotations by id (a gone one counts as deleted); returns how many were asked."""
        ids = list(annotation_ids)
        for aid in ids:
            try:
                self._call(f"deleting annotation {aid}", self.sdk.annotations.delete, int(aid))
            except LabelStudioError as exc:
                if "HTTP 404" not in str(exc):
                    raise
        return len(ids)

    # ------------------------------------------------------------------ links
    def task_url(self, project_id: int, task_id: int) -> str:
        """Where a person opens the task in Label Studio."""
        return label_studio_task_url(self.url, project_id)(task_id)
