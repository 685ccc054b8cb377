"""RQ jobs, unique ids, debounce, the exclusive lock, the cron schedule and the worker command.

Real Redis at 127.0.0.1:6379 with a unique queue name and unique project ids per
test; everything created is deleted afterwards.  Jobs that would need Label
Studio are not run: the plumbing is exercised with the small jobs below.
"""
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue, Retry, SimpleWorker
from rq.job import JOB_ID_PATTERN, Job

import scoring.jobs as jobs
from core.errors import ConfigError, ScoringConfigError
from core.queue import enqueue_unique, job_status
from core.settings import Settings
from core.stores import HISTORY_PREFIX, PROJECT_VERSIONS_KEY
from scoring.schedule import build_cron, load_schedules, parse_schedules

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = "redis://127.0.0.1:6379/0"


# --------------------------------------------------------------------------- jobs used by the tests
def record(list_key, value):
    """Append ``value`` to a Redis list (so the test can count executions)."""
    from rq import get_current_job

    get_current_job().connection.rpush(list_key, value)
    return value


def hold(list_key, release_key):
    """Record entry, wait (at most 60 s) until ``release_key`` exists, record exit."""
    from rq import get_current_job

    conn = get_current_job().connection
    conn.rpush(list_key, "in")
    deadline = time.monotonic() + 60
    while not conn.exists(release_key) and time.monotonic() < deadline:
        time.sleep(0.05)
    conn.rpush(list_key, "out")


@jobs.fail_fast
def final_failure():
    raise ConfigError("the project is set up wrongly")


@jobs.fail_fast
def flaky_failure():
    raise RuntimeError("Label Studio answered 503")


# --------------------------------------------------------------------------- fixtures
@pytest.fixture
def conn():
    c = Redis.from_url(REDIS_URL)
    yield c
    c.close()


@pytest.fixture
def qname(conn):
    name = f"test-jobs-{uuid.uuid4().hex[:10]}"
    yield name
    q = Queue(name, connection=conn)
    ids = set(q.get_job_ids())
    for reg in (q.started_job_registry, q.finished_job_registry, q.failed_job_registry, q.scheduled_job_registry,
                q.deferred_job_registry, q.canceled_job_registry):
        ids.update(reg.get_job_ids())
    delete_jobs(conn, *ids)
    for key in conn.scan_iter(f"rq:*{name}*"):
        conn.delete(key)
    for key in conn.scan_iter("rq:worker:*"):
        if conn.type(key) == b"hash" and conn.hget(key, "queues") == name.encode():
            conn.delete(key)
            conn.srem("rq:workers", key)
    conn.srem("rq:queues", f"rq:queue:{name}")


@pytest.fixture
def pid():
    return f"t{uuid.uuid4().hex[:8]}"


def settings_for(qname, tmp_path=None, **over):
    return Settings(redis_url=REDIS_URL, queue_name=qname, data_dir=str(tmp_path or "var-test-unused"), **over)


def burst(conn, qname, **kw):
    SimpleWorker([Queue(qname, connection=conn)], connection=conn).work(burst=True, with_scheduler=True, **kw)


def delete_jobs(conn, *ids):
    for jid in ids:
        keys = list(conn.scan_iter(f"rq:*{jid}*"))
        if keys:
            conn.delete(*keys)


# --------------------------------------------------------------------------- ids
def test_job_ids_are_deterministic_valid_and_distinct():
    ids = {
        jobs.score_job_id(7, "v2", "ground_truth", True),
        jobs.score_job_id(7, "v2", "ground_truth", False),
        jobs.score_job_id(7, "v2.1", "ground_truth", True),
        jobs.score_job_id(7, "v2_1", "ground_truth", True),
        jobs.score_job_id(7, "v2", "v1", True),
        jobs.score_job_id("7", "gpt 4o/mini:x", "v:1", True),
    }
    assert len(ids) == 6
    assert all(JOB_ID_PATTERN.fullmatch(i) for i in ids)
    assert jobs.score_job_id(7, "v2") == jobs.score_job_id("7", "v2", "ground_truth", True)
    # the same id the backend uses for its debounced rescore
    from backend.jobs import rescore_job_id as backend_rescore_id

    assert jobs.rescore_job_id("12") == backend_rescore_id("12")


# --------------------------------------------------------------------------- unique ids
def test_identical_job_enqueued_twice_runs_once(conn, qname, pid):
    q = Queue(qname, connection=conn)
    out = f"test:out:{pid}"
    try:
        first, created1 = enqueue_unique(q, record, job_ids=[f"rec-{pid}", f"rec-{pid}-next"], args=(out, "a"))
        second, created2 = enqueue_unique(q, record, job_ids=[f"rec-{pid}", f"rec-{pid}-next"], args=(out, "b"))
        assert created1 and not created2 and first.id == second.id == f"rec-{pid}"
        assert q.count == 1
        burst(conn, qname)
        assert conn.lrange(out, 0, -1) == [b"a"]
        # finished: the id is free again and a new run is enqueued under it
        third, created3 = enqueue_unique(q, record, job_ids=[f"rec-{pid}"], args=(out, "c"), result_ttl=600)
        assert created3 and third.id == f"rec-{pid}" and q.count == 1
        burst(conn, qname)
        assert conn.lrange(out, 0, -1) == [b"a", b"c"]
        assert q.finished_job_registry.get_job_ids() == [f"rec-{pid}"]
    finally:
        conn.delete(out)


def test_failed_job_id_is_reused(conn, qname, pid):
    q = Queue(qname, connection=conn)
    job, created = enqueue_unique(q, final_failure, job_ids=[f"fail-{pid}"])
    burst(conn, qname)
    assert job_status(conn, f"fail-{pid}") == "failed"
    assert f"fail-{pid}" in q.failed_job_registry.get_job_ids()
    again, created = enqueue_unique(q, final_failure, job_ids=[f"fail-{pid}"])
    assert created and again.get_status() == "queued"
    assert f"fail-{pid}" not in q.failed_job_registry.get_job_ids()


def test_request_during_a_run_gets_one_follow_up_and_runs_never_overlap(conn, qname, pid, tmp_path):
    """A real worker process runs job 1; requests arriving meanwhile fold into a single follow-up."""
    q = Queue(qname, connection=conn)
    out, release = f"test:out:{pid}", f"test:release:{pid}"
    slots = [f"hold-{pid}", f"hold-{pid}-next"]
    env = {"REDIS_URL": REDIS_URL, "RQ_QUEUE": qname, "DATA_DIR": str(tmp_path), "LOG_LEVEL": "WARNING"}
    enqueue_unique(q, hold, job_ids=slots, args=(out, release))
    worker = subprocess.Popen([sys.executable, "-m", "scoring", "worker", "--burst"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while conn.llen(out) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert conn.lrange(out, 0, -1) == [b"in"]
        assert job_status(conn, slots[0]) == "started"
        follow, created = enqueue_unique(q, hold, job_ids=slots, args=(out, release))
        assert created and follow.id == slots[1]
        again, created = enqueue_unique(q, hold, job_ids=slots, args=(out, release))
        assert not created and again.id == slots[1]
        assert q.count == 1
        conn.set(release, 1)
        output, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0, output.decode()
        assert conn.lrange(out, 0, -1) == [b"in", b"out", b"in", b"out"]
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
        conn.delete(out, release)


# --------------------------------------------------------------------------- retries and timeouts
def test_enqueue_score_has_unique_id_timeout_and_retries(conn, qname, pid):
    settings = settings_for(qname)
    job, created = jobs.enqueue_score(settings, jobs.ScoreRun(pid, "v1", "ground_truth", True))
    same, created2 = jobs.enqueue_score(settings, jobs.ScoreRun(pid, "v1"))
    other, created3 = jobs.enqueue_score(settings, jobs.ScoreRun(pid, "v1", write_back=False))
    assert created and not created2 and created3
    assert job.id == same.id == jobs.score_job_id(pid, "v1") and other.id != job.id
    job = Job.fetch(job.id, connection=conn)
    assert job.func_name == "scoring.jobs.score_job"
    assert job.args == (pid, "v1") and job.kwargs == {"against": "ground_truth", "write_back": True}
    assert job.timeout == jobs.SCORE_TIMEOUT
    assert job.retries_left == 3 and job.retry_intervals == [30, 120, 600]
    assert Queue(qname, connection=conn).count == 2


def test_final_errors_are_not_retried_but_others_are(conn, qname, pid):
    q = Queue(qname, connection=conn)
    final = q.enqueue(final_failure, job_id=f"final-{pid}", retry=Retry(max=2, interval=[3600]))
    flaky = q.enqueue(flaky_failure, job_id=f"flaky-{pid}", retry=Retry(max=2, interval=[3600]))
    burst(conn, qname)
    final.refresh()
    flaky.refresh()
    assert final.get_status() == "failed" and final.retries_left == 0
    assert "the project is set up wrongly" in final.latest_result().exc_string
    assert flaky.get_status() == "scheduled" and flaky.retries_left == 1   # retried in an hour


# --------------------------------------------------------------------------- exclusive lock
def test_exclusive_lock_keeps_identical_runs_apart(conn, pid):
    key = f"scoring:lock:test:{pid}"
    events, a_in, b_trying, b_in = [], threading.Event(), threading.Event(), threading.Event()

    def a():
        with jobs.exclusive(Redis.from_url(REDIS_URL), key, ttl=5, wait=30):
            events.append("A in")
            a_in.set()
            b_trying.wait(10)
            b_in.wait(1.0)     # B must not get in while A holds the lock
            events.append("A out")

    def b():
        a_in.wait(10)
        b_trying.set()
        with jobs.exclusive(Redis.from_url(REDIS_URL), key, ttl=5, wait=30):
            b_in.set()
            events.append("B in")
        events.append("B out")

    ta, tb = threading.Thread(target=a), threading.Thread(target=b)
    for t in (ta, tb):
        t.start()
    for t in (ta, tb):
        t.join(30)
    assert events == ["A in", "A out", "B in", "B out"]
    assert not conn.exists(key)


def test_exclusive_gives_up_with_busy_and_lock_expires(conn, pid):
    key = f"scoring:lock:test:{pid}"
    try:
        with jobs.exclusive(conn, key, ttl=30, wait=1):
            assert 0 < conn.pttl(key) <= 30_000       # a crashed holder cannot keep it forever
            with pytest.raises(jobs.JobBusy, match="has held the lock"):
                with jobs.exclusive(Redis.from_url(REDIS_URL), key, ttl=30, wait=0.2):
                    pass
        assert not conn.exists(key)
        with jobs.exclusive(None, key):                # no Redis: runs unguarded
            pass
    finally:
        conn.delete(key)


def test_score_job_needs_label_studio_settings():
    with pytest.raises(ConfigError, match="LABEL_STUDIO_URL"):
        jobs.score_job("1", "v1", settings=Settings())


# --------------------------------------------------------------------------- debounced rescore
def test_enqueue_rescore_debounces_and_matches_the_backend(conn, qname, pid):
    settings = settings_for(qname, rescore_debounce=300)
    gt = {"action": "ANNOTATION_UPDATED", "project": {"id": pid}, "annotation": {"id": 1, "ground_truth": True}}
    not_gt = {"action": "ANNOTATION_CREATED", "annotation": {"ground_truth": False}}
    assert jobs.enqueue_rescore(settings, pid, not_gt) is None
    assert jobs.enqueue_rescore(settings, pid, {"action": "TASKS_CREATED"}) is None
    before = datetime.now(timezone.utc)
    job = jobs.enqueue_rescore(settings, pid, gt)
    assert job.id == f"rescore-{pid}" and job.get_status() == "scheduled"
    q = Queue(qname, connection=conn)
    registry = q.scheduled_job_registry
    assert registry.get_job_ids() == [job.id]
    assert registry.get_scheduled_time(job.id) > before        # runs after the debounce, not now
    assert job.timeout == jobs.RESCORE_TIMEOUT and job.retries_left == 3
    # more events (from this side and from the ML backend's webhook) fold into the same job
    deleted = {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 2}]}
    assert jobs.enqueue_rescore(settings, pid, deleted).id == job.id
    from backend.jobs import JobQueue

    assert JobQueue(settings, connection=conn).enqueue_rescore(pid) == job.id
    assert registry.get_job_ids() == [job.id] and q.count == 0


def test_rescore_on_annotation_enqueues_each_ground_truth_version(conn, qname, pid):
    from backend.projects import open_project_versions
    from scoring.history import open_history

    settings = settings_for(qname)
    history = open_history(settings)
    try:
        runs = [("v1", "ground_truth"), ("v3", "v1"), ("v2", "ground_truth"), ("v1", "ground_truth")]
        for minute, (version, ref) in enumerate(runs):
            history.add({"project": pid, "version": version, "reference": ref, "score": 0.5,
                         "finished_at": 1_700_000_000 + 60 * minute})
        open_project_versions(settings).set(pid, "v4")
        out = jobs.rescore_on_annotation(pid, settings=settings)
        # newest-scored first, then the served version; not v3 (model vs model)
        assert out["versions"] == ["v1", "v2", "v4"]
        assert [j["created"] for j in out["jobs"]] == [True, True, True]
        q = Queue(qname, connection=conn)
        queued = {Job.fetch(i, connection=conn).args[1]: Job.fetch(i, connection=conn) for i in q.get_job_ids()}
        assert set(queued) == {"v1", "v2", "v4"}
        assert all(j.func_name == "scoring.jobs.score_job"
                   and j.kwargs == {"against": "ground_truth", "write_back": True} for j in queued.values())
        # a second trigger before they ran folds into them
        again = jobs.rescore_on_annotation(pid, settings=settings)
        assert [j["created"] for j in again["jobs"]] == [False, False, False] and q.count == 3
        assert jobs.rescore_on_annotation(f"{pid}x", settings=settings)["jobs"] == []
    finally:
        history.clear(pid)
        conn.hdel(PROJECT_VERSIONS_KEY, pid)


# --------------------------------------------------------------------------- cron schedule
def write_schedules(tmp_path, text):
    path = tmp_path / "schedules.yaml"
    path.write_text(text)
    return str(path)


def test_schedules_validation(tmp_path):
    assert load_schedules(str(ROOT / "schedules.example.yaml"))
    bad = [
        ("schedules: [{project: 1, version: v1}]", "exactly one of"),
        ("schedules: [{project: 1, version: v1, cron: '0 * * * *', interval: 5}]", "exactly one of"),
        ("schedules: [{project: 1, version: v1, cron: 'every hour'}]", "not a valid cron"),
        ("schedules: [{project: 1, version: v1, interval: -3}]", "whole number"),
        ("schedules: [{version: v1, interval: 3}]", "`project` is required"),
        ("schedules: [{project: 1, version: v1, interval: 3, colour: red}]", "unknown key"),
        ("jobs: []", "unknown key"),
        ("schedules: [1, 2]", "must be a mapping"),
        ("schedules: [{project: 1, version: v1, interval: 3, write_back: maybe}]", "true or false"),
    ]
    for text, message in bad:
        with pytest.raises(ScoringConfigError, match=message):
            load_schedules(write_schedules(tmp_path, text))
    with pytest.raises(ScoringConfigError, match="not found"):
        load_schedules(str(tmp_path / "missing.yaml"))
    with pytest.raises(ScoringConfigError, match="cannot read"):
        load_schedules(str(tmp_path))                       # a directory (docker bind-mount of a missing file)
    with pytest.raises(ScoringConfigError, match="not valid YAML"):
        load_schedules(write_schedules(tmp_path, "schedules: [project: 1"))
    assert parse_schedules(None) == []


def test_cron_registration_enqueues_a_job(conn, qname, pid, tmp_path):
    path = write_schedules(tmp_path, f"""
schedules:
  - {{project: {pid}, version: v1, interval: 3600}}
  - {{project: {pid}, version: v2, against: v1, cron: "0 3 * * *", write_back: false}}
""")
    settings = settings_for(qname, tmp_path)
    cron = build_cron(settings, path, conn)
    names = [f"score {pid} v1 vs ground_truth", f"score {pid} v2 vs v1"]
    try:
        assert [j.name for j in cron.get_jobs()] == names
        assert all(j.queue_name == qname for j in cron.get_jobs())
        assert cron.get_jobs()[1].next_enqueue_time > datetime.now(timezone.utc)
        fired = cron.enqueue_jobs()
        # the interval job fires at start, the cron one waits for 03:00
        assert [j.name for j in fired] == [names[0]]
        q = Queue(qname, connection=conn)
        (job_id,) = q.get_job_ids()
        job = Job.fetch(job_id, connection=conn)
        assert job.func_name == "scoring.jobs.scheduled_score"
        assert job.args == (pid, "v1") and job.kwargs == {"against": "ground_truth", "write_back": True}
        assert fired[0].get_job_ids(conn) == [job_id]
        # the scheduled job enqueues the real scoring job under its unique id, on the same queue
        SimpleWorker([q], connection=conn).work(burst=True, max_jobs=1)
        assert job.get_status(refresh=True) == "finished"
        assert job.return_value()["job_id"] == jobs.score_job_id(pid, "v1")
        assert q.get_job_ids() == [jobs.score_job_id(pid, "v1")]
        assert cron.enqueue_jobs() == []                      # nothing else due yet
    finally:
        for name in names:
            conn.delete(f"rq:cron_job:{name}:jobs")
            conn.zrem("rq:cron_jobs", name)


def test_worker_command_runs_schedules_and_jobs_fail_fast_without_label_studio(conn, qname, pid, tmp_path):
    """Without Label Studio settings `python -m scoring worker --schedules F` refuses to start in one line (each
    scheduled run would fail with a traceback in the log); a plain worker starts with a one-line warning, and the
    scheduled scoring job it runs fails at once with an actionable message, without using retries."""
    path = write_schedules(tmp_path, f"schedules:\n  - {{project: {pid}, version: v1, interval: 3600}}\n")
    env = {"REDIS_URL": REDIS_URL, "RQ_QUEUE": qname, "DATA_DIR": str(tmp_path), "LOG_LEVEL": "WARNING"}
    name = f"score {pid} v1 vs ground_truth"
    try:
        out = subprocess.run([sys.executable, "-m", "scoring", "worker", "--schedules", path, "--burst"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.strip().splitlines() == [
            f"error: the scheduled scoring runs of {path} need LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY in the "
            "worker's environment (e.g. LABEL_STUDIO_URL=http://localhost:8080, LABEL_STUDIO_API_KEY=<Account & "
            "Settings → Access Token>)"]
        score_id = jobs.score_job_id(pid, "v1")
        assert Job.exists(score_id, connection=conn) is False          # nothing was scheduled
        build_cron(Settings(redis_url=REDIS_URL, queue_name=qname), path, conn).enqueue_jobs()
        out = subprocess.run([sys.executable, "-m", "scoring", "worker", "--burst"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stderr
        assert ("LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY not set: scoring and pre-labelling jobs will fail"
                in out.stderr.splitlines()[0]), out.stderr
        job = Job.fetch(score_id, connection=conn)
        assert job.get_status() == "failed" and job.retries_left == 0
        assert "LABEL_STUDIO_URL" in job.latest_result().exc_string
    finally:
        conn.delete(f"rq:cron_job:{name}:jobs")
        conn.zrem("rq:cron_jobs", name)


def test_worker_command_needs_redis():
    import argparse

    from scoring.commands import worker

    parser = argparse.ArgumentParser()
    worker.add_arguments(parser)
    with pytest.raises(ConfigError, match="REDIS_URL"):
        worker.run(parser.parse_args(["--burst"]), Settings())


# --------------------------------------------------------------------------- end to end on a real Label Studio
@pytest.mark.labelstudio
def test_score_job_and_webhook_rescore_through_a_real_worker(conn, qname, label_studio, tmp_path):
    """score_job in a real worker process against a real Label Studio: the hand-computed score, a history
    record, then a ground-truth event (enqueued the way the ML backend does) rescored by the trampoline."""
    from backend.jobs import JobQueue
    from scoring.history import RedisHistory
    from tests.fixtures.ls_export import make_fixture

    pid, _ids = make_fixture.build_project(label_studio.sdk(), title="jobs e2e")
    settings = label_studio.settings(redis_url=REDIS_URL, queue_name=qname, data_dir=str(tmp_path), rescore_debounce=0)
    env = {"REDIS_URL": REDIS_URL, "RQ_QUEUE": qname, "DATA_DIR": str(tmp_path), "LOG_LEVEL": "WARNING",
           "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token}
    history = RedisHistory(conn)
    run_ids = []

    def work():
        out = subprocess.run([sys.executable, "-m", "scoring", "worker", "--burst"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        assert label_studio.token not in out.stdout + out.stderr

    try:
        job, created = jobs.enqueue_score(settings, jobs.ScoreRun(pid, "v-good", "ground_truth", True))
        work()
        job = Job.fetch(job.id, connection=conn)
        assert job.get_status() == "finished", job.latest_result().exc_string
        summary = job.return_value()
        run_ids.append(summary["run_id"])
        assert summary["score"] == pytest.approx(0.978869, abs=1e-6)
        assert (summary["n_compared"], summary["n_skipped"]) == (18, 2)
        (run,) = [r for r in history.list(pid) if r["run_id"] == summary["run_id"]]
        assert run["version"] == "v-good" and run["write_back"] is True

        # a ground-truth annotation changed: the backend enqueues the debounced trampoline by dotted path
        rescore_id = JobQueue(settings, connection=conn).enqueue_rescore(str(pid))
        work()
        trampoline = Job.fetch(rescore_id, connection=conn)
        assert trampoline.get_status() == "finished"
        enqueued = {j["version"]: j for j in trampoline.return_value()["jobs"]}
        assert enqueued["v-good"]["created"] and enqueued["v-good"]["job_id"] == jobs.score_job_id(pid, "v-good")
        rescored = Job.fetch(jobs.score_job_id(pid, "v-good"), connection=conn)
        assert rescored.get_status() == "finished"
        second = rescored.return_value()
        run_ids.append(second["run_id"])
        assert second["run_id"] != summary["run_id"] and second["score"] == pytest.approx(0.978869, abs=1e-6)
    finally:
        for rid in filter(None, run_ids):
            conn.delete(f"{HISTORY_PREFIX}:run:{rid}")
            conn.zrem(f"{HISTORY_PREFIX}:{pid}:runs", rid)
