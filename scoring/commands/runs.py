"""``python -m scoring runs --project ID [--json OUT]``: the runs of a project, newest first.

One line per run (``scoring run``, ``/predict`` overflow, pre-labelling on import in embedded mode):
id, version, where it ran, status, progress (tasks done / selected, chunks done / chunks), provider
calls, cache hits, cost, failures per reason.  Read from the run records (``backend.runstore``:
Redis with ``REDIS_URL``, else ``DATA_DIR/runs.sqlite3``).
"""
from __future__ import annotations

import datetime as dt

from backend.runstore import open_run_store
from core.settings import Settings
from scoring.commands.score import write_json
from scoring.runs import usd_text

HELP = "list a project's runs (status, progress, cost, failures)"


def add_arguments(parser) -> None:
    parser.add_argument("--project", required=True, type=int, help="Label Studio project id")
    parser.add_argument("--limit", type=int, default=20, help="newest N runs (default 20)")
    parser.add_argument("--json", dest="json_out", metavar="OUT.json", help="also write the runs as JSON")


def line(run: dict) -> str:
    """One run as a line.

    >>> line({"run_id": "r1", "version": "v", "mode": "queue", "source": "run", "status": "finished", "tasks": 4,
    ...       "selected": 4, "skipped_before": 0, "chunks_done": 2, "chunks": 2, "provider_calls": 4, "cached": 0,
    ...       "usd": 0.002, "failed": {"deadline": 1}, "created": 0})[22:]
    'r1  v  run/queue  finished  4/4 tasks (2/2 chunks)  4 call(s), 0 cached  $0.0020  failed: deadline 1'
    """
    done = int(run.get("tasks") or 0) + int(run.get("skipped_before") or 0)
    failed = ", ".join(f"{k} {n}" for k, n in (run.get("failed") or {}).items()) or "none"
    when = dt.datetime.fromtimestamp(run.get("created") or 0, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return (f"{when}Z  {run['run_id']}  {run['version']}  {run.get('source', 'run')}/{run.get('mode', '?')}  "
            f"{run['status']}  {done}/{run.get('selected', done)} tasks ({run.get('chunks_done', 0)}/"
            f"{run.get('chunks', 0)} chunks)  {run.get('provider_calls', 0)} call(s), {run.get('cached', 0)} cached  "
            f"{usd_text(run.get('usd'))}  failed: {failed}"
            + (f"  {run['writes_pending']} prediction(s) waiting to be written" if run.get("writes_pending") else ""))


def run(args, settings: Settings) -> int:
    runs = open_run_store(settings).runs(args.project, limit=max(1, args.limit))
    if not runs:
        print(f"no runs recorded for project {args.project}")
    for r in runs:
        print(line(r))
    if args.json_out:
        write_json(args.json_out, {"project": args.project, "runs": runs})
    return 0
