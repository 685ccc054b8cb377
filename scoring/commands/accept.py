"""``python -m scoring accept``: accept a version's confident predictions as (non-ground-truth) annotations.

    python -m scoring accept --project 7 --version v2 --target-accuracy 0.98 [--dry-run]
    python -m scoring accept --project 7 --version v2 --undo

Picks the lowest confidence threshold whose accepted ground-truth tasks have a one-sided 95%
Clopper-Pearson lower bound on accuracy at or above the target (fixed-sequence scan from the highest
threshold down, stopping at the first failure: :mod:`scoring.accept`), prints it with the coverage
(share of unannotated tasks accepted), the estimate and its bound, and -- unless ``--dry-run`` --
creates one annotation per accepted unannotated task from the prediction's regions: **not** ground
truth, linked to the prediction (``parent_prediction``) and marked in every region's ``meta``
(``accepted_by: "llm-prelabel accept"``, version, threshold, estimate, lower_bound).  Tasks with any
annotation are never touched, so a second run adds only what is new.  ``--undo`` deletes exactly the
annotations carrying the mark of this version.  Too little ground truth: exit 1, saying how many more
ground-truth tasks are needed.
"""
from __future__ import annotations

from core.errors import ScoringError
from scoring.accept import accepted_annotation, choose_threshold, is_accepted_by, needed_ground_truth
from scoring.calibration import confidence_sample, fmt
from scoring.commands.calibrate import ledger_confidence
from scoring.export import prediction_of

HELP = "accept a version's confident predictions as annotations (not ground truth) at a target accuracy"


def add_arguments(parser) -> None:
    parser.add_argument("--project", required=True, type=int, help="Label Studio project id")
    parser.add_argument("--version", required=True, help="model_version of the predictions")
    parser.add_argument("--target-accuracy", type=float, default=0.98, metavar="A",
                        help="accuracy the accepted predictions must reach (95%% lower bound); default 0.98")
    parser.add_argument("--min-score", type=float, default=1.0,
                        help="a control counts as right when its agreement is at least this (default 1: exact)")
    parser.add_argument("--dry-run", action="store_true", help="print the threshold and coverage; create nothing")
    parser.add_argument("--undo", action="store_true", help="delete the annotations accept created for --version")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def candidates(tasks: list[dict], version: str, raw: dict) -> tuple[list[tuple], int]:
    """([(task id, confidence, prediction)] of unannotated tasks with a scored, non-empty prediction of
    ``version``], number of unannotated tasks)."""
    out, unannotated = [], 0
    for t in tasks:
        if t.get("annotations"):
            continue
        unannotated += 1
        pred = prediction_of(t, version)
        conf = raw.get(t.get("id"), (pred or {}).get("score")) if pred else None
        if pred and conf is not None and pred.get("result"):
            out.append((t["id"], float(conf), pred))
    return out, unannotated


def run(args, settings) -> int:
    from core.labelstudio import LabelStudioClient
    from scoring.output import quiet_http
    from scoring.writeback import upsert_review_tab

    if not 0 < args.target_accuracy < 1:
        raise ScoringError("--target-accuracy must be between 0 and 1, e.g. 0.98")
    quiet_http()
    client = LabelStudioClient(settings)
    tasks, label_config = client.pull_project(args.project, progress=not args.no_progress)
    if args.undo:
        mine = [a["id"] for t in tasks for a in t.get("annotations") or () if is_accepted_by(a, args.version)]
        client.delete_annotations(mine)
        print(f"deleted {len(mine)} annotation(s) that accept created for {args.version} in project {args.project}")
        return 0
    raw = ledger_confidence(settings, args.version, args.project)
    _, conf, right = confidence_sample(tasks, label_config, args.version, raw, args.min_score)
    decision = choose_threshold(conf, right, args.target_accuracy)
    if not decision.ok:
        more = needed_ground_truth(conf, right, args.target_accuracy)
        why = (f"about {more} more ground-truth tasks (like these) would support it" if more is not None else
               "even the most confident predictions are not that accurate: no amount of ground truth will do; "
               "lower the target or improve the version")
        print(f"refused: {len(conf)} ground-truth tasks cannot show {args.target_accuracy:.3f} accuracy at 95% "
              f"confidence for any threshold; {why}")
        return 1
    pool, unannotated = candidates(tasks, args.version, raw)
    chosen = [(tid, pred) for tid, c, pred in pool if c >= decision.threshold]
    coverage = len(chosen) / unannotated if unannotated else 0.0
    print(f"{args.version}: threshold {decision.threshold:.4f}: on {decision.n} ground-truth tasks at or above it, "
          f"accuracy {fmt(decision.estimate)} (95% lower bound {fmt(decision.lower)} >= {args.target_accuracy}); "
          f"accepts {len(chosen)} of {unannotated} unannotated task(s) (coverage {coverage:.1%})")
    if args.dry_run:
        return 0
    client.create_annotations(args.project, [accepted_annotation(tid, p, args.version, decision) for tid, p in chosen],
                              ground_truth=False, progress=not args.no_progress)
    tab = upsert_review_tab(client, args.project, args.version)
    print(f"created {len(chosen)} annotation(s), not ground truth, marked 'accepted_by: llm-prelabel accept'; "
          f"the rest are in the Data Manager tab '{tab['title']}'")
    return 0
