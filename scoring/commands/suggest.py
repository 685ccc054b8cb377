"""``python -m scoring suggest``: which tasks to annotate next to tell two versions apart.

    python -m scoring suggest --project 7 --versions A B [--n 50] [--seed S] [--json OUT.json]

Pulls the project; the candidates are its tasks with no annotation yet that both versions
pre-labelled.  Each candidate is picked at random with a known probability that grows with
how much A and B disagree on it (1 - their agreement; ``scoring.stats.suggest_tasks``, about
``--n`` picks).  Where A and B agree, annotating cannot change the difference between them, so
the picks go where the answer is open; every candidate keeps a chance (``--floor``) so that
weighted estimates stay unbiased.  Creates (or updates) the Data Manager tab "Annotate next:
A vs B" holding exactly the picked tasks, and writes each pick's inclusion probability to
``--json``.

Using the probabilities: once the picked tasks are annotated, the mean over the N candidates
of any per-task number y (e.g. a version's agreement with ground truth) is estimated without
bias by ``scoring.stats.ht_mean([y_i], [inclusion_i], n_total=N)`` (Horvitz-Thompson:
sum(y_i / pi_i) / N over the picks).  With a proxy score yhat on every candidate (e.g.
agreement with a strong version), pass residuals y_i - yhat_i and ``offset`` = mean of yhat
over the N candidates: same target, usually a narrower interval.  A plain average of the
picked tasks would over-weight the disagreements.
"""
from __future__ import annotations

from core.errors import ScoringError
from scoring.engine import GROUND_TRUTH, compile_schema, evaluate_schema
from scoring.export import prediction_of
from scoring.output import quiet_http, write_json

HELP = "pick unannotated tasks where two versions disagree (known probabilities) into a Data Manager tab"
FLOOR = 0.05  # every candidate's minimum weight: keeps weighted estimates unbiased where disagreement misleads


def add_arguments(parser) -> None:
    parser.add_argument("--project", required=True, type=int, help="Label Studio project id")
    parser.add_argument("--versions", required=True, nargs=2, metavar=("A", "B"), help="the two versions to tell apart")
    parser.add_argument("--n", type=int, default=50, help="how many tasks to pick, on average (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the draw (default 0)")
    parser.add_argument("--floor", type=float, default=FLOOR,
                        help=f"weight every candidate keeps beside its disagreement (default {FLOOR:g}, > 0)")
    parser.add_argument("--json", dest="json_out", metavar="OUT.json",
                        help="write the picks with their inclusion probabilities")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _annotated(task: dict) -> bool:
    return any(isinstance(a, dict) and not a.get("was_cancelled") for a in task.get("annotations") or ())


def pick_tasks(tasks: list[dict], label_config: str, versions: tuple[str, str], n: int, seed: int = 0,
               floor: float = FLOOR) -> dict:
    """The draw (pure): ``{"versions", "n_requested", "seed", "floor", "n_candidates",
    "tasks": [{"id", "inclusion", "disagreement"}]}``; candidates = unannotated tasks with a
    prediction of both ``versions`` (A, B) that fits the label config."""
    from scoring.stats import suggest_tasks

    a, b = versions
    if a == b or GROUND_TRUTH in (a, b):
        raise ScoringError("--versions needs two different model versions")
    if n < 1 or not floor > 0:
        raise ScoringError("--n must be at least 1 and --floor above 0")
    open_tasks = [t for t in tasks if not _annotated(t)
                  and prediction_of(t, a) is not None and prediction_of(t, b) is not None]
    if not open_tasks:
        raise ScoringError(f"no unannotated task has predictions of both {a} and {b}: nothing to suggest")
    report = evaluate_schema(open_tasks, compile_schema(label_config), a, b, intervals=None)
    disagreement = {t["id"]: 1.0 - t["score"] for t in report["tasks"]}
    picked = suggest_tasks(disagreement, n, floor, seed)
    return {"versions": [a, b], "n_requested": n, "seed": seed, "floor": floor, "n_candidates": len(disagreement),
            "tasks": [{"id": tid, "inclusion": pi, "disagreement": disagreement[tid]}
                      for tid, pi in zip(picked.task_ids, picked.inclusion, strict=True)]}


def tab_data(task_ids: list) -> dict:
    """Data Manager tab settings holding exactly ``task_ids``: one "ID equal to" filter per task, joined by
    "or" (the filter a person would build in the Data Manager), lowest id first.

    >>> tab_data([4, 9])["filters"]["items"][1]
    {'filter': 'filter:tasks:id', 'operator': 'equal', 'type': 'Number', 'value': 9}
    """
    return {"filters": {"conjunction": "or", "items": [
        {"filter": "filter:tasks:id", "operator": "equal", "type": "Number", "value": int(tid)} for tid in task_ids]},
        "ordering": ["tasks:id"]}


def run(args, settings) -> int:
    quiet_http()
    from core.labelstudio import LabelStudioClient

    a, b = args.versions
    client = LabelStudioClient(settings)
    tasks, label_config = client.pull_project(args.project, progress=not args.no_progress)
    result = {"project": args.project, **pick_tasks(tasks, label_config, (a, b), args.n, args.seed, args.floor)}
    ids = [t["id"] for t in result["tasks"]]
    title = f"Annotate next: {a} vs {b}"
    result["tab"] = {"id": client.upsert_view(args.project, title, tab_data(ids)), "title": title} if ids else None
    if args.json_out:
        write_json(args.json_out, result)
    print(f"project {args.project}: picked {len(ids)} of {result['n_candidates']} unannotated task(s) where "
          f"{a} and {b} both predicted (about {args.n} asked, seed {args.seed})")
    if ids:
        print(f"  Data Manager tab '{title}': tasks {', '.join(map(str, ids[:20]))}{' ...' if len(ids) > 20 else ''}")
    if args.json_out:
        print(f"  inclusion probabilities -> {args.json_out} (weight each annotated task by 1 / inclusion)")
    return 0
