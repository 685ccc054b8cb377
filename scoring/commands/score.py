"""``python -m scoring score``: pull a project from Label Studio, score a version, optionally write back.

    python -m scoring score --project 7 --version v2
    python -m scoring score --project 7 --version v2 --write-back [--make-current]
    python -m scoring score --project 7 --version v2 --against v1 [--candidates 20]
    python -m scoring score --project 7 --version v2 --json out/v2.json --html out/v2.html

Needs ``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY``.  Prints a summary table
(overall score, per control, kappa/alpha, cost, the lowest-agreement tasks with
links).  ``--json`` writes the report (the ``evaluate`` contract plus ``cost``,
``lowest``, ``write_back``, ``candidates``, ``run_id``); ``--html`` the HTML report.
"""
from __future__ import annotations

import json
import sys

from scoring.engine import GROUND_TRUTH, SKIP_RESULT_MISMATCH
from core.errors import ScoringError

HELP = "pull a Label Studio project, score a version against ground truth or another version, write agreement back"


def add_arguments(parser) -> None:
    parser.add_argument("--project", required=True, type=int, help="Label Studio project id")
    parser.add_argument("--version", required=True, help="model_version of the predictions to score")
    parser.add_argument("--against", default=GROUND_TRUTH, metavar="ground_truth|VERSION_B",
                        help="reference: the ground-truth annotations (default) or another version's predictions")
    parser.add_argument("--config", metavar="scoring.yaml", help="per-control metrics, weights, custom metrics")
    parser.add_argument("--write-back", action="store_true",
                        help="write per-task agreement into Label Studio as predictions with scores "
                             "(replaces the previous run of this evaluation)")
    parser.add_argument("--make-current", action="store_true",
                        help="with --write-back: make the evaluation the project's current model version, so the "
                             "Data Manager's 'Prediction score' column shows agreement (changes which predictions "
                             "pre-label tasks; see README)")
    parser.add_argument("--candidates", type=int, default=0, metavar="N",
                        help="with --against VERSION_B: turn the N most-agreeing unannotated tasks into annotations "
                             "from --version's predictions, NOT marked ground truth (a person confirms them)")
    parser.add_argument("--json", dest="json_out", metavar="OUT.json", help="write the report as JSON")
    parser.add_argument("--html", dest="html_out", metavar="OUT.html", help="write the HTML report")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _fmt(value, spec=".3f") -> str:
    return "–" if value is None else format(value, spec)


def _usd(value) -> str:
    return "unknown" if value is None else f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def summary_lines(report: dict) -> list[str]:
    """The printed summary of a report (one list of lines)."""
    ref = report["reference"]
    lines = [f"project {report.get('project')}: {report['version']} vs {ref}: score {_fmt(report['score'])} over "
             f"{report['n_compared']} task(s), {report['n_skipped']} skipped (of {report['n_tasks']})", ""]
    lines.append(f"  {'control':<20} {'metric':<18} {'score':>7} {'n':>6} {'kappa':>7} {'alpha':>7}")
    for name, pc in report["per_control"].items():
        lines.append(f"  {name:<20} {pc['metric']:<18} {_fmt(pc['score']):>7} {pc['n']:>6} "
                     f"{_fmt(report['kappa'].get(name)):>7} {_fmt(report['alpha'].get(name)):>7}")
    cost = report.get("cost") or {}
    lines += ["", f"  cost: {_usd(cost.get('usd'))} for {cost.get('tasks', 0)} pre-labelled task(s), "
                  f"{_usd(cost.get('usd_per_task'))} per task, {_usd(cost.get('projected_usd'))} projected for all "
                  f"{report.get('n_project_tasks')} task(s)"]
    for note in cost.get("notes") or ():
        lines.append(f"        ({note})")
    low = report.get("lowest") or []
    if low:
        title = "lowest agreement" if ref == GROUND_TRUTH else f"most disagreement with {ref}"
        lines += ["", f"  {title}:"]
        lines += [f"    {_fmt(r['score'])}  task {r['id']}  {r.get('url') or ''}" for r in low[:10]]
    wb = report.get("write_back")
    if wb:
        lines += ["", f"  write-back: '{wb['model_version']}' now has {wb['written']} prediction(s) "
                      f"({wb['created']} written, {wb['deleted']} replaced or removed, {wb['unchanged']} unchanged"
                      f"{', rewritten in bulk' if wb['mode'] == 'rewrite' else ''}); Data Manager tab "
                      f"'{wb['tab']['title']}'"]
        if wb.get("rejected"):
            lines.append(f"  warning: Label Studio rejected {wb['rejected']} of them (see its log)")
        if wb["current_model_version"] == wb["model_version"]:
            lines.append("  it is the project's current model version: the tab lists the lowest agreement first")
            if wb.get("previous_model_version") not in (None, wb["model_version"]):
                lines.append(f"  (before it was {wb['previous_model_version']!r}: pick that again in Settings → "
                             "Annotation → Prelabeling when the review is done)")
        else:
            lines.append(f"  the project's current model version is {wb['current_model_version']!r}: the 'Prediction "
                         "score' column shows agreement only once this evaluation is selected (rerun with "
                         "--make-current, or Settings → Annotation → Prelabeling)")
    cands = report.get("candidates")
    if cands is not None:
        lines += ["", f"  created {len(cands)} ground-truth candidate annotation(s) (not marked ground truth): "
                      f"tasks {', '.join(str(c['task']) for c in cands) or 'none'}"]
    if report.get("run_id"):
        lines += ["", f"  run {report['run_id']} stored in the history"]
    return lines


def write_json(path: str, data) -> None:
    """Write ``data`` as JSON (``ScoringError`` when the file cannot be written)."""
    import os

    try:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(data, fh, ensure_ascii=False, indent=1)
    except OSError as exc:
        raise ScoringError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_html(path: str, report: dict, settings, *, comparison=None) -> None:
    """Write the HTML report (``ScoringError`` when the file cannot be written).  When the report
    names its project: the project's score over time from the run history, and links to the tasks
    in Label Studio (with ``LABEL_STUDIO_URL`` set)."""
    from scoring.history import open_history
    from core.labelstudio import label_studio_task_url
    from scoring.report_html import render_html

    project = report.get("project")
    task_url = label_studio_task_url(settings.label_studio_url, project) if settings.label_studio_url and project is not None else None
    history = open_history(settings).list(project) if project is not None else None
    try:
        render_html(report, path, comparison=comparison, task_url=task_url, history=history, secrets=settings.secrets())
    except OSError as exc:
        raise ScoringError(f"cannot write {path}: {exc.strerror or exc}") from None


def run(args, settings) -> int:
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request is noise here
    from scoring.config import load_scoring_config
    from scoring.pipeline import score_project

    if args.make_current and not args.write_back:
        raise ScoringError("--make-current needs --write-back")
    config = load_scoring_config(args.config)
    report = score_project(settings, args.project, args.version, args.against, write_back=args.write_back,
                           config=config, make_current=args.make_current, candidates=args.candidates,
                           progress=not args.no_progress)
    if args.json_out:
        write_json(args.json_out, report)
    if args.html_out:
        write_html(args.html_out, report, settings)
    mismatched = sum(1 for s in report["skipped"] if s.get("code") == SKIP_RESULT_MISMATCH)
    if mismatched:
        print(f"warning: {mismatched} task(s) skipped because their result does not match the label config "
              "(listed under \"skipped\" in the JSON report)", file=sys.stderr)
    print("\n".join(summary_lines(report)))
    return 0
