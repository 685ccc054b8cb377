"""``python -m scoring score``: pull a project from Label Studio, score a version, optionally write back.

    python -m scoring score --project 7 --version v2
    python -m scoring score --project 7 --version v2 --write-back [--make-current]
    python -m scoring score --project 7 --version v2 --against v1 [--candidates 20]
    python -m scoring score --project 7 --version v2 --json out/v2.json --html out/v2.html
    python -m scoring score --project 7 --version v2-mini --proxy v2-4o [--level 0.9]   # project-wide estimate

Needs ``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY``.  Prints a summary table
(overall score and per control with their intervals, kappa/alpha, cost, the lowest-agreement
tasks with links; with ``--proxy`` the project-wide estimate).  ``--json`` writes the report
(the ``evaluate`` contract plus ``cost``, ``lowest``, ``write_back``, ``candidates``, ``run_id``,
``ppi``); ``--html`` the HTML report.  Both paths are checked before Label Studio is asked anything.

With ``--write-back`` (or ``--candidates``) the run holds the lock of (project, version,
reference) -- the one the worker's jobs take -- from the pull to the history record; an
identical run waits for it (``--wait SECONDS``, default 600) or, with ``--no-wait``, says
that one is running and exits 2.
"""
from __future__ import annotations

import sys

from core.errors import ScoringError
from core.fmt import num, usd_fixed
from core.locks import LOCK_WAIT
from scoring.engine import GROUND_TRUTH, SKIP_RESULT_MISMATCH
from scoring.output import check_outputs, quiet_http, write_html, write_json
from scoring.uncertainty import IntervalOptions, interval_text, parse_level, ppi_text

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
    parser.add_argument("--level", type=parse_level, default=0.95,
                        help="confidence level of the intervals beside every estimate (default 0.95)")
    parser.add_argument("--proxy", metavar="VERSION_P",
                        help="a strong version run on all tasks: add the project-wide estimate of the score (PPI)")
    parser.add_argument("--json", dest="json_out", metavar="OUT.json", help="write the report as JSON")
    parser.add_argument("--html", dest="html_out", metavar="OUT.html", help="write the HTML report")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    wait = parser.add_mutually_exclusive_group()
    wait.add_argument("--wait", type=float, default=LOCK_WAIT, metavar="SECONDS",
                      help="with --write-back or --candidates: wait at most this long for an identical run (same "
                           f"project, version and reference) that is writing to Label Studio (default {LOCK_WAIT})")
    wait.add_argument("--no-wait", action="store_true",
                      help="with --write-back or --candidates: if an identical run is writing, say so and exit 2")


def summary_lines(report: dict) -> list[str]:
    """The printed summary of a report (one list of lines)."""
    ref = report["reference"]
    lines = [f"project {report.get('project')}: {report['version']} vs {ref}: score "
             f"{interval_text(report['score'], report.get('score_ci'))} over {report['n_compared']} task(s), "
             f"{report['n_skipped']} skipped (of {report['n_tasks']})", ""]
    lines.append(f"  {'control':<20} {'metric':<18} {'score':>7} {'interval':>16} {'n':>6} {'kappa':>7} {'alpha':>7}")
    for name, pc in report["per_control"].items():
        ci = pc.get("ci")
        lines.append(f"  {name:<20} {pc['metric']:<18} {num(pc['score']):>7} "
                     f"{f'[{ci[0]:.3f}, {ci[1]:.3f}]' if ci else '[–]':>16} {pc['n']:>6} "
                     f"{num(report['kappa'].get(name)):>7} {num(report['alpha'].get(name)):>7}")
    for name, kappa in report["kappa"].items():
        lines.append(f"  {name}: Cohen's kappa {interval_text(kappa, (report.get('kappa_ci') or {}).get(name))}, "
                     f"Krippendorff's alpha "
                     f"{interval_text(report['alpha'].get(name), (report.get('alpha_ci') or {}).get(name))}")
    if report.get("ppi"):
        lines += ["", f"  {ppi_text(report['ppi'])}"]
    lines += _cost_lines(report)
    low = report.get("lowest") or []
    if low:
        title = "lowest agreement" if ref == GROUND_TRUTH else f"most disagreement with {ref}"
        lines += ["", f"  {title}:"]
        lines += [f"    {num(r['score'])}  task {r['id']}  {r.get('url') or ''}" for r in low[:10]]
    if report.get("write_back"):
        lines += _write_back_lines(report["write_back"], report.get("project"))
    cands = report.get("candidates")
    if cands is not None:
        lines += ["", f"  created {len(cands)} ground-truth candidate annotation(s) (not marked ground truth): "
                      f"tasks {', '.join(str(c['task']) for c in cands) or 'none'}"]
    if report.get("run_id"):
        lines += ["", f"  run {report['run_id']} stored in the history"]
    return lines


def _cost_lines(report: dict) -> list[str]:
    cost = report.get("cost") or {}
    lines = ["", f"  cost: {usd_fixed(cost.get('usd'))} for {cost.get('tasks', 0)} pre-labelled task(s), "
                 f"{usd_fixed(cost.get('usd_per_task'))} per task, {usd_fixed(cost.get('projected_usd'))} projected "
                 f"for all {report.get('n_project_tasks')} task(s)"]
    return lines + [f"        ({note})" for note in cost.get("notes") or ()]


def _write_back_lines(wb: dict, pid=None) -> list[str]:
    lines = ["", f"  write-back: '{wb['model_version']}' now has {wb['written']} prediction(s) "
                 f"({wb['created']} written, {wb['deleted']} replaced or removed, {wb['unchanged']} unchanged"
                 f"{', rewritten in bulk' if wb['mode'] == 'rewrite' else ''}); Data Manager tab "
                 f"'{wb['tab']['title']}'"]
    if wb.get("rejected"):
        lines.append(f"  warning: Label Studio rejected {wb['rejected']} of them (see its log)")
    pid = pid if pid is not None else "ID"
    if wb["current_model_version"] == wb["model_version"]:
        lines.append("  it is the active evaluation (the project's current model version): the tab lists the lowest "
                     "agreement first; other evaluation tabs are marked (inactive) and show no scores")
        back = wb.get("backend_model_version")
        before = f" (back to {back!r}, current before any evaluation)" if back else ""
        lines.append(f"  when the review is done: python -m scoring activate --project {pid} --backend{before}")
    else:
        lines.append(f"  the project's current model version is {wb['current_model_version']!r}: this evaluation's tab "
                     "is marked (inactive) and shows no scores until it is made active "
                     f"(python -m scoring activate --project {pid} --evaluation \"{wb['model_version']}\")")
    return lines


def run(args, settings) -> int:
    check_outputs({"--json": args.json_out, "--html": args.html_out})  # before anything is written
    quiet_http()
    from scoring.config import load_scoring_config
    from scoring.pipeline import ScoreOptions, score_project

    if args.make_current and not args.write_back:
        raise ScoringError("--make-current needs --write-back")
    options = ScoreOptions(against=args.against, config=load_scoring_config(args.config), write_back=args.write_back,
                           make_current=args.make_current, candidates=args.candidates, progress=not args.no_progress,
                           lock_wait=0 if args.no_wait else max(0.0, args.wait),
                           intervals=IntervalOptions(level=args.level), proxy=args.proxy)
    report = score_project(settings, args.project, args.version, options)
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
