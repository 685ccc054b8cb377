"""What a prediction import costs Label Studio 1.23.2, and what the run writer's check costs.

    LS_BIN=.../label-studio .venv/bin/python bench/bench_ls_import.py [--tasks 10000]

On a project of ``--tasks`` tasks, with 0, then ``--tasks``, predictions already in it: the time of
one ``import_predictions`` of 1, 200 and 1,000 predictions (Label Studio recounts every task of the
project on each import, so the size of the import hardly matters), and of
``LabelStudioClient.tasks_with_version`` over as many tasks when none has the version (the check
``backend.runwrites`` makes before every import); and what a run's plan pays to read the project:
``list_tasks`` (a Data Manager listing of the tasks' data and prediction versions) against
``pull_project`` (the snapshot export with full annotations and predictions).  Figures for the
README's "Runs at scale".
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core.labelstudio import LabelStudioClient  # noqa: E402
from core.settings import Settings  # noqa: E402
from fakellm.dataset import LABEL_CONFIG, make_tasks  # noqa: E402
from tests.lsharness import start_server  # noqa: E402


def pred(task: int, version: str) -> dict:
    return {"task": task, "model_version": version, "score": 0.5, "result": [
        {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}}]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=10000)
    args = ap.parse_args()
    n = args.tasks
    with tempfile.TemporaryDirectory(prefix="bench-ls-import-") as tmp:
        ls = start_server(os.path.join(tmp, "ls"))
        try:
            client = LabelStudioClient(Settings(label_studio_url=ls.url, label_studio_api_key=ls.token))
            pid = ls.create_project(LABEL_CONFIG, title="import cost")
            data = [{"data": t["data"]} for t in make_tasks(n)]
            for i in range(0, n, 2000):
                ls.sdk().projects.import_tasks(id=pid, request=data[i:i + 2000], commit_to_project=True)
            ids = [t.id for t in ls.sdk().tasks.list(project=pid, fields="task_only", page_size=n)]
            print(f"project of {n} tasks")
            for existing in (0, n):
                if existing:
                    client.import_predictions(pid, [pred(t, "other") for t in ids], chunk=n)
                t0 = time.perf_counter()
                listed, _ = client.list_tasks(pid)
                listing = time.perf_counter() - t0
                t0 = time.perf_counter()
                pulled, _ = client.pull_project(pid, progress=False)
                export = time.perf_counter() - t0
                print(f"{existing:>6} predictions in the project: reading its {len(listed)} tasks: list_tasks "
                      f"{listing:4.2f} s, pull_project (snapshot export) {export:4.2f} s ({len(pulled)} tasks)")
                for size in (1, 200, 1000):
                    t0 = time.perf_counter()
                    client.import_predictions(pid, [pred(t, f"v{existing}-{size}") for t in ids[:size]], chunk=size)
                    took = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    client.tasks_with_version(pid, ids[-size:], "absent")
                    check = time.perf_counter() - t0
                    print(f"{existing:>6} predictions in the project: import of {size:>4}: {took:5.2f} s; "
                          f"tasks_with_version over {size:>4} tasks: {check:4.2f} s")
        finally:
            ls.stop()


if __name__ == "__main__":
    main()
