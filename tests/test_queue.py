"""core.queue.enqueue_unique: one pending job per id, race-free, on a real Redis (unique queue names)."""
from __future__ import annotations

import threading
import uuid

import pytest
from redis import Redis
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus

from core.queue import enqueue_unique, job_status, queue_for
from core.settings import Settings

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def queue():
    conn = Redis.from_url(REDIS_URL)
    q = Queue(f"test-queue-{uuid.uuid4().hex[:8]}", connection=conn)
    yield q
    for registry in (q.scheduled_job_registry, q.finished_job_registry, q.failed_job_registry,
                     q.started_job_registry):
        for job_id in registry.get_job_ids():
            Job.fetch(job_id, connection=conn).delete()
    q.delete(delete_jobs=True)


def test_racing_enqueuers_create_one_job(queue):
    """Twelve threads enqueue the same work at once: one creates the job, the others fold into it."""
    job_id = f"race-{uuid.uuid4().hex[:8]}"
    barrier, results = threading.Barrier(12), []

    def enqueue():
        barrier.wait()
        conn = Redis.from_url(REDIS_URL)  # one connection per "process"
        job, created = enqueue_unique(Queue(queue.name, connection=conn), "builtins.print", job_ids=[job_id],
                                      args=("x",))
        results.append((job.id, created))

    threads = [threading.Thread(target=enqueue) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 12 and {r[0] for r in results} == {job_id}
    assert sum(created for _, created in results) == 1
    assert queue.job_ids == [job_id]


def test_one_id_running_job_takes_the_event_and_finished_one_is_replaced(queue):
    """The rescore's rule (``job_ids=[id]``): scheduled or started -> fold; finished -> a new job."""
    job_id = f"fold-{uuid.uuid4().hex[:8]}"
    job, created = enqueue_unique(queue, "builtins.print", job_ids=[job_id], delay=300)
    assert created and job.get_status() == JobStatus.SCHEDULED
    assert queue.scheduled_job_registry.get_job_ids() == [job_id]
    again, created = enqueue_unique(queue, "builtins.print", job_ids=[job_id], delay=300)
    assert not created and again.id == job_id
    job.set_status(JobStatus.STARTED)   # what a worker records while it runs the job
    running, created = enqueue_unique(queue, "builtins.print", job_ids=[job_id])
    assert not created and running.id == job_id
    job.set_status(JobStatus.QUEUED)
    queue.scheduled_job_registry.remove(job)
    queue.enqueue_job(job)
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    assert job_status(queue.connection, job_id) == "finished"
    fresh, created = enqueue_unique(queue, "builtins.print", job_ids=[job_id])
    assert created and fresh.get_status() == JobStatus.QUEUED
    assert job_id not in queue.finished_job_registry.get_job_ids()


def test_queue_for_needs_redis_url():
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="REDIS_URL"):
        queue_for(Settings())
