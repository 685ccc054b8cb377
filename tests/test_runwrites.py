"""backend.runwrites: queued predictions written in few imports, once each, and counted once (real Redis).

Label Studio is played by ``Studio`` below: the two calls the writer makes (which tasks have the
version, import), with the 400 Label Studio answers for a task that left the project.  The same
path against a real Label Studio and killed workers: tests/test_runs_queue.py.
"""
from __future__ import annotations

import time
import uuid

import pytest
from redis import Redis

from backend.runstore import RedisRunStore
from backend.runwrites import IMPORT_EVERY_S, WriteLoop, drain
from core.errors import LabelStudioError
from core.stores import delete_keys, key

REDIS_URL = "redis://127.0.0.1:6379/0"


class Studio:
    """Predictions per task in one project; counts the imports."""

    def __init__(self, tasks=range(1, 11)):
        self.tasks = set(tasks)
        self.preds: dict[int, list[str]] = {t: [] for t in self.tasks}
        self.imports: list[int] = []

    def tasks_with_version(self, project, ids, version):
        return {t for t in ids if version in self.preds.get(t, [])}

    def tasks_by_ids(self, project, ids):
        return [{"id": t, "data": {}, "predictions": []} for t in ids if t in self.tasks]

    def import_predictions(self, project, preds, chunk=1000):
        if any(p["task"] not in self.tasks for p in preds):
            raise LabelStudioError("task not found in project", status=400)
        for p in preds:
            self.preds[p["task"]].append(p["model_version"])
        self.imports.append(len(preds))
        return len(preds)


@pytest.fixture
def store():
    conn = Redis.from_url(REDIS_URL)
    name = f"test-runwrites-{uuid.uuid4().hex[:8]}"
    yield RedisRunStore(conn, name)
    delete_keys(conn, key("runs", name))


def item(task: int, ok: bool = True) -> dict:
    return {"task": task, "ok": ok, "pred": {"task": task, "model_version": "v", "result": [], "score": None}}


def new_run(store, run: str, chunks: int = 1) -> None:
    store.create(run, {"project": 7, "chunks": chunks, "created": time.time()})
    for n in range(chunks):
        store.chunk_done(run, n, {"tasks": 0})


def test_everything_queued_is_written_in_one_import_and_counted(store):
    ls = Studio()
    new_run(store, "r1")
    store.push_writes("7", "v", "r1", [item(1), item(2), item(3, ok=False)])
    store.push_writes("7", "v", "r1", [item(4)])
    assert store.get("r1")["status"] == "running" and store.get("r1")["writes_pending"] == 4
    assert drain(store, ls, "7", "v") == 4
    assert ls.imports == [4] and all(ls.preds[t] == ["v"] for t in (1, 2, 3, 4))
    run = store.get("r1")
    assert (run["predicted"], run["skipped_existing"], run["writes_pending"], run["status"]) == (3, 0, 0, "finished")
    assert store.write_keys() == [] and drain(store, ls, "7", "v") == 0


def test_the_paced_loop_imports_once_a_look_and_leaves_arrivals_for_the_next(store):
    """Predictions queued during an import wait for the loop's next look (Label Studio gets its pause);
    a final drain (``once=False``) imports until nothing is queued."""
    class Busy(Studio):   # chunks keep queueing while Label Studio imports
        def import_predictions(self, project, preds, chunk=1000):
            done = super().import_predictions(project, preds, chunk)
            if len(self.imports) < 3:
                store.push_writes("7", "v", "r1", [item(4 + len(self.imports))])
            return done
    ls = Busy()
    new_run(store, "r1")
    store.push_writes("7", "v", "r1", [item(1), item(2), item(3)])
    assert drain(store, ls, "7", "v", once=True) == 3 and ls.imports == [3]
    assert store.queued_writes("7", "v") == 1                 # task 5 arrived during the import
    assert drain(store, ls, "7", "v") == 2 and ls.imports == [3, 1, 1]
    assert store.get("r1")["writes_pending"] == 0 and all(ls.preds[t] == ["v"] for t in (1, 2, 3, 5, 6))


def test_a_task_queued_twice_or_already_predicted_gets_no_second_prediction(store):
    ls = Studio()
    ls.preds[5] = ["v"]                                    # written by another run before
    new_run(store, "r1")
    store.push_writes("7", "v", "r1", [item(1), item(5)])
    store.push_writes("7", "v", "r1", [item(1)])           # a chunk that ran again
    drain(store, ls, "7", "v")
    assert ls.preds[1] == ["v"] and ls.preds[5] == ["v"]
    run = store.get("r1")
    assert (run["predicted"], run["skipped_existing"], run["writes_pending"]) == (1, 1, 0)


def test_two_runs_queueing_the_same_task_write_it_once_and_the_second_counts_it_skipped(store):
    ls = Studio()
    new_run(store, "r1")
    new_run(store, "r2")
    store.push_writes("7", "v", "r1", [item(1), item(2)])
    store.push_writes("7", "v", "r2", [item(2), item(3)])   # overlapping runs, written in one import
    drain(store, ls, "7", "v")
    assert ls.imports == [3] and all(ls.preds[t] == ["v"] for t in (1, 2, 3))
    r1, r2 = store.get("r1"), store.get("r2")
    assert (r1["predicted"], r1["skipped_existing"], r2["predicted"], r2["skipped_existing"]) == (2, 0, 1, 1)
    assert r1["status"] == r2["status"] == "finished"


def test_a_writer_killed_between_import_and_trim_leaves_nothing_to_double(store):
    """The next writer finds the tasks written and noted as the run's own: neither written again nor
    counted as skipped; a writer killed after noting but before importing leaves them to import."""
    ls = Studio()
    new_run(store, "r1")
    store.push_writes("7", "v", "r1", [item(1), item(2)])
    store.claim_written({"r1": [1, 2]})                   # noted, then ...
    ls.import_predictions(7, [item(1)["pred"]])           # ... task 1 imported, task 2 not: killed
    drain(store, ls, "7", "v")
    assert ls.preds[1] == ["v"] and ls.preds[2] == ["v"]
    run = store.get("r1")
    assert (run["predicted"], run["skipped_existing"], run["writes_pending"]) == (1, 0, 0)


def test_a_task_that_left_the_project_is_dropped_and_the_rest_written(store):
    ls = Studio(tasks=[1, 2])
    new_run(store, "r1")
    store.push_writes("7", "v", "r1", [item(1), item(2), item(3)])
    drain(store, ls, "7", "v")
    assert ls.imports == [2] and ls.preds == {1: ["v"], 2: ["v"]}
    run = store.get("r1")
    assert (run["predicted"], run["writes_pending"], run["status"]) == (2, 0, "finished")
    assert run["failed"] == {"not_in_project": 1}


def test_predictions_of_a_deleted_project_are_dropped_not_retried_forever(store):
    ls = Studio()
    new_run(store, "r1")
    store.push_writes("7", "v", "r1", [item(1), item(2)])

    def gone(*a, **k):
        raise LabelStudioError("not found", status=404)
    ls.tasks_with_version = gone  # type: ignore[method-assign]
    drain(store, ls, "7", "v")
    run = store.get("r1")
    assert (run["predicted"], run["writes_pending"], run["status"], run["failed"]) == \
        (0, 0, "finished", {"not_in_project": 2})
    assert ls.imports == [] and store.write_keys() == []


def test_a_failed_import_keeps_the_queue_for_the_next_writer(store):
    ls = Studio()
    new_run(store, "r1")
    store.push_writes("7", "v", "r1", [item(1)])
    ls.import_predictions = lambda *a, **k: (_ for _ in ()).throw(LabelStudioError("down"))  # type: ignore
    with pytest.raises(LabelStudioError):
        drain(store, ls, "7", "v")
    assert store.queued_writes("7", "v") == 1 and store.get("r1")["writes_pending"] == 1
    del ls.import_predictions
    drain(store, ls, "7", "v")
    assert ls.preds[1] == ["v"] and store.get("r1")["status"] == "finished"


def test_a_writer_leaves_a_queue_another_one_is_writing(store):
    ls = Studio()
    store.push_writes("7", "v", "r1", [item(1)])
    with store.write_lock("7", "v"):
        assert drain(store, ls, "7", "v", wait=0) == 0
    assert store.queued_writes("7", "v") == 1


def test_the_loop_imports_a_growing_queue_at_most_every_few_seconds_and_at_once_when_it_stops(store):
    ls = Studio(tasks=range(1, 100))
    loop = WriteLoop(store, ls)
    store.push_writes("7", "v", "r1", [item(1)])
    assert loop.once(paced=True) == 1                       # the first import goes at once
    store.push_writes("7", "v", "r1", [item(2)])
    assert loop.once(paced=True) == 0                       # growing, and the last import was just now
    store.push_writes("7", "v", "r1", [item(3)])
    assert loop.once(paced=True) == 0
    assert loop.once(paced=True) == 2                       # stopped growing: the run's chunks are done
    store.push_writes("7", "v", "r1", [item(4)])
    store.r.set(f"{store._writes('7', 'v')}:at", f"{time.time() - IMPORT_EVERY_S - 1} 0.01")
    assert loop.once(paced=True) == 1                       # growing, but the last import is old enough
    store.push_writes("7", "v", "r1", [item(5)])
    store.r.set(f"{store._writes('7', 'v')}:at", f"{time.time() - IMPORT_EVERY_S - 1} 30")
    assert loop.once(paced=True) == 0                       # ... unless it took long: 3x as long to wait
    assert ls.imports == [1, 2, 1]


def test_a_pause_between_pushes_is_not_the_end_while_the_run_has_chunks_to_do(store):
    """The last round of a chunk can leave the queue still for a poll or two: the loop imports at once
    only when the newest entry's run has no chunk left, so the final import takes everything."""
    ls = Studio(tasks=range(1, 100))
    loop = WriteLoop(store, ls)
    store.create("r2", {"project": 7, "chunks": 2, "created": time.time()})
    store.push_writes("7", "v", "r2", [item(1)])
    assert loop.once(paced=True) == 1                       # the first import goes at once
    store.push_writes("7", "v", "r2", [item(2)])
    assert loop.once(paced=True) == 0                       # growing
    assert loop.once(paced=True) == 0                       # not growing, but chunk 1 of 2 is still running
    store.chunk_done("r2", 0, {"tasks": 1})
    store.push_writes("7", "v", "r2", [item(3)])
    store.chunk_done("r2", 1, {"tasks": 2})
    assert loop.once(paced=True) == 0                       # growing: the pause still holds
    assert loop.once(paced=True) == 2                       # every chunk done, nothing new: at once
    assert ls.imports == [1, 2] and store.get("r2")["status"] == "finished"


def test_a_chunk_job_without_a_live_loop_knows_it(store):
    assert not store.writer_alive()
    store.writer_beat(5)
    assert store.writer_alive()


def test_a_chunk_queues_each_prediction_as_it_is_made_and_the_writer_imports_them(store, fake_llm, tmp_path):
    """predict_and_queue through the real Predictor and the stand-in LLM: every prediction is queued
    (in QUEUE_EVERY batches and the rest at the end), ``on_outcome`` sees each outcome once, scored."""
    from backend.predictor import Predictor
    from backend.runwork import QUEUE_EVERY, Chunk, predict_and_queue
    from backend.versions import parse_versions
    from core.settings import Settings
    from fakellm.dataset import LABEL_CONFIG, make_tasks

    versions = parse_versions({"versions": [{"id": "v", "provider": "openai", "model": "gpt-4o-mini",
                                             "instruction": "Label.\n<text>{text}</text>"}]})
    settings = Settings(openai_api_key="k", openai_base_url=fake_llm.openai_base_url, provider_max_retries=0,
                        data_dir=str(tmp_path), predict_concurrency=4)
    predictor = Predictor(settings, versions, cache=None)
    n = QUEUE_EVERY + 7
    tasks = [{"id": i, "data": t["data"]} for i, t in enumerate(make_tasks(n), start=1)]
    new_run(store, "r1")
    outcomes, queued, seconds = predict_and_queue(predictor, store, Chunk("r1", 0, 7, "v", [t["id"] for t in tasks]),
                                                  "v", tasks, LABEL_CONFIG)
    assert len(outcomes) == n and all(o.ok for o in outcomes) and queued == {t["id"] for t in tasks}
    assert store.queued_writes("7", "v") == n and seconds["predict_s"] > 0
    ls = Studio(tasks=range(1, n + 1))
    drain(store, ls, "7", "v")
    assert ls.imports == [n] and store.get("r1")["predicted"] == n
