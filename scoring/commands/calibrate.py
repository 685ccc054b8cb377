"""``python -m scoring calibrate``: fit a version's confidence calibration on a project's ground truth.

    python -m scoring calibrate --project 7 --version v2 [--json OUT.json] [--html OUT.html] [--dry-run]
    python -m scoring calibrate --export EXPORT.json --label-config CONFIG.xml --version v2   # offline

Pairs each ground-truth task's raw confidence (the usage ledger's, else the prediction's ``score``) with
whether the prediction was right (every control's agreement >= ``--min-score``, default 1: exactly the
ground truth), fits a monotone map (:mod:`scoring.calibration`), prints AUROC, ECE and Brier before and
after (held-out folds), and -- with ``--project``, unless ``--dry-run`` -- stores the map for
(version, project), where the backend picks it up for new predictions (within 30 s), and creates or
updates the Data Manager tab "Review: V, least confident first"; ``--rescore`` also sets the scores of the
version's existing predictions to their calibrated values (one request each), so that the tab sorts old
and new predictions on one scale.  ``--html`` writes the evaluation
report with the reliability diagram and the coverage-accuracy curve.
"""
from __future__ import annotations

import logging
from typing import Any

from core.errors import ScoringError
from scoring.calibration import calibrate, confidence_sample, fmt, raw_from_ledger

HELP = "fit a version's confidence calibration on ground truth (AUROC, ECE, Brier; stored for the backend)"
log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--project", type=int, help="Label Studio project id (pulled; the map is stored for it)")
    src.add_argument("--export", metavar="EXPORT.json", help="offline: a Label Studio JSON export (nothing stored)")
    parser.add_argument("--label-config", metavar="CONFIG.xml", help="with --export: the project's label config")
    parser.add_argument("--version", required=True, help="model_version of the predictions")
    parser.add_argument("--min-score", type=float, default=1.0,
                        help="a control counts as right when its agreement is at least this (default 1: exact)")
    parser.add_argument("--json", dest="json_out", metavar="OUT.json", help="write the calibration report as JSON")
    parser.add_argument("--html", dest="html_out", metavar="OUT.html", help="the HTML report with the figures")
    parser.add_argument("--dry-run", action="store_true", help="measure only: store no map, change no tab")
    parser.add_argument("--rescore", action="store_true",
                        help="also set the scores of the version's existing predictions in the project to their "
                             "calibrated values (from the ledger's raw confidence), so old and new ones sort together")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def load_inputs(args, settings) -> tuple[list[dict], str, dict, Any]:
    """(tasks, label config, raw confidence per task from the ledger, Label Studio client or None)."""
    if args.export:
        from scoring.commands.evaluate import read_label_config
        from scoring.export import load_export

        if not args.label_config:
            raise ScoringError("--export needs --label-config CONFIG.xml")
        return load_export(args.export), read_label_config(args.label_config), {}, None
    from core.labelstudio import LabelStudioClient
    from scoring.output import quiet_http

    quiet_http()
    client = LabelStudioClient(settings)
    tasks, label_config = client.pull_project(args.project, progress=not args.no_progress)
    return tasks, label_config, ledger_confidence(settings, args.version, args.project), client


def ledger_confidence(settings, version: str, project) -> dict:
    """task id -> raw task confidence from the usage ledger ({} when it is unavailable)."""
    try:
        from backend.ledger import open_ledger

        ledger = open_ledger(settings)
        try:
            return raw_from_ledger(ledger.records(version, project=str(project)))
        finally:
            ledger.close()
    except Exception as exc:  # the predictions' scores are the fallback
        log.warning("usage ledger unavailable (%s); using the predictions' scores", exc)
        return {}


def run(args, settings) -> int:
    tasks, label_config, raw, client = load_inputs(args, settings)
    _, conf, right = confidence_sample(tasks, label_config, args.version, raw, args.min_score)
    if not len(conf):
        raise ScoringError(f"no ground-truth task has a prediction of {args.version} with a confidence; set "
                           "`confidence:` on the version in prompts.yaml and pre-label the ground-truth tasks")
    cmap, report = calibrate(conf, right)
    print(f"{args.version}: {report['n']} ground-truth tasks, {fmt(report['accuracy'])} right; AUROC "
          f"{fmt(report['auroc'])}; ECE {fmt(report['ece_before'])} -> {fmt(report['ece_after'])} (held out); "
          f"Brier {fmt(report['brier_before'])} -> {fmt(report['brier_after'])}; map: {cmap.method}")
    if report["warning"]:
        print(f"warning: {report['warning']}")
    if client is not None and not args.dry_run:
        from backend.calibration import CalibrationStore
        from scoring.writeback import upsert_review_tab

        CalibrationStore(settings).put(args.version, args.project, cmap)
        tab = upsert_review_tab(client, args.project, args.version)
        print(f"stored for project {args.project}: new predictions of {args.version} get calibrated scores; "
              f"Data Manager tab '{tab['title']}'")
        if args.rescore:
            print(f"re-scored {rescore(client, args.project, args.version, raw, cmap)} existing prediction(s)")
    _write(args, settings, tasks, label_config, report)
    return 0


def rescore(client, project: int, version: str, raw: dict, cmap) -> int:
    """Set each existing prediction of ``version`` whose task has a raw confidence in the ledger to
    ``cmap(raw)`` (only those that change); returns how many were set."""
    wanted = {}
    for pred in client.predictions_of_version(project, version):
        value = raw.get(pred["task"])
        if value is not None and (pred["score"] is None or abs(pred["score"] - round(cmap(value), 6)) > 1e-9):
            wanted[pred["id"]] = round(cmap(value), 6)
    return client.set_prediction_scores(wanted)


def _write(args, settings, tasks, label_config, report) -> None:
    from scoring.output import write_html, write_json

    if args.json_out:
        write_json(args.json_out, report)
    if args.html_out:
        from scoring.engine import evaluate

        full = evaluate(tasks, label_config, args.version)
        full["calibration"] = report
        write_html(args.html_out, full, settings)
