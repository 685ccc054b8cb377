"""``python -m scoring compare``: several versions of one project, quality and cost side by side.

    python -m scoring compare --project 7 --versions v1 v2 v3 [--against ground_truth|VERSION] \\
        [--json out/compare.json] [--html out/compare.html]

Pulls the project once, scores every version against the same reference, and
prints one row per version (best score first): score, difference to the best,
cost per task, projected cost for the whole project, cost relative to the best;
then the cheapest version within 0.02 of the best ("similar accuracy, a third of
the price") and Krippendorff's alpha of each single-choice control across all
the versions (and the reference).  Each version's run is stored in the history.
"""
from __future__ import annotations

from scoring.commands.score import _fmt, _usd, write_html, write_json
from scoring.engine import GROUND_TRUTH

HELP = "score several versions of a Label Studio project against one reference: quality and cost side by side"


def add_arguments(parser) -> None:
    parser.add_argument("--project", required=True, type=int, help="Label Studio project id")
    parser.add_argument("--versions", required=True, nargs="+", metavar="VERSION", help="two or more model versions")
    parser.add_argument("--against", default=GROUND_TRUTH, metavar="ground_truth|VERSION",
                        help="the one reference all versions are scored against (default: ground truth)")
    parser.add_argument("--config", metavar="scoring.yaml", help="per-control metrics, weights, custom metrics")
    parser.add_argument("--json", dest="json_out", metavar="OUT.json", help="write reports and the table as JSON")
    parser.add_argument("--html", dest="html_out", metavar="OUT.html",
                        help="write the HTML report of the best version with the quality-vs-cost comparison")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def table_lines(result: dict) -> list[str]:
    """The printed comparison table."""
    lines = [f"project {result['project']}: versions against {result['reference']}", "",
             f"  {'version':<24} {'score':>7} {'Δ best':>7} {'tasks':>6} {'USD/task':>10} {'projected':>10} {'× cost':>7}"]
    for row in result["table"]:
        rel = "–" if row["relative_cost"] is None else f"{row['relative_cost']:.2f}"
        lines.append(f"  {str(row['version']):<24} {_fmt(row['score']):>7} {_fmt(row['score_delta'], '+.3f'):>7} "
                     f"{row['n_tasks']:>6} {_usd(row['usd_per_task']):>10} {_usd(row['projected_usd']):>10} {rel:>7}"
                     f"{'  best' if row['best'] else ''}")
    pick = result.get("cheapest_good_enough")
    best = result["table"][0] if result["table"] else None
    if pick and best and pick["version"] != best["version"]:
        lines += ["", f"  {pick['version']} scores within 0.02 of {best['version']} at "
                      f"{pick['relative_cost']:.2f}× its cost per task" if pick.get("relative_cost") is not None else ""]
    for control, alpha in (result.get("alpha") or {}).items():
        lines.append(f"  Krippendorff's alpha of '{control}' across {len(result['reports']) + 1} sources: {_fmt(alpha)}")
    return lines


def run(args, settings) -> int:
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request is noise here
    from scoring.config import load_scoring_config
    from scoring.pipeline import compare_versions

    config = load_scoring_config(args.config)
    result = compare_versions(settings, args.project, args.versions, args.against, config=config,
                              progress=not args.no_progress)
    if args.json_out:
        write_json(args.json_out, result)
    if args.html_out:
        best = next(r for r in result["reports"] if r["version"] == result["table"][0]["version"])
        write_html(args.html_out, best, settings, comparison=result["table"])
    print("\n".join(table_lines(result)))
    return 0
