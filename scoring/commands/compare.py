"""``python -m scoring compare``: several versions of one project, quality and cost side by side.

    python -m scoring compare --project 7 --versions v1 v2 v3 [--against ground_truth|VERSION] \\
        [--json out/compare.json] [--html out/compare.html]

Pulls the project once, scores every version against the same reference, and
prints one row per version (best score first): score, difference to the best,
cost per task, projected cost for the whole project, cost relative to the best;
then the cheapest version within ``--tolerance`` (default 0.02) of the best ("similar
accuracy, a third of the price") and Krippendorff's alpha of each single-choice control across all
the versions (and the reference).  Each version's run is stored in the history.
"""
from __future__ import annotations

from core.fmt import num, usd_fixed
from scoring.cost import TOLERANCE
from scoring.engine import GROUND_TRUTH
from scoring.output import check_outputs, quiet_http, write_html, write_json

HELP = "score several versions of a Label Studio project against one reference: quality and cost side by side"


def add_arguments(parser) -> None:
    parser.add_argument("--project", required=True, type=int, help="Label Studio project id")
    parser.add_argument("--versions", required=True, nargs="+", metavar="VERSION", help="two or more model versions")
    parser.add_argument("--against", default=GROUND_TRUTH, metavar="ground_truth|VERSION",
                        help="the one reference all versions are scored against (default: ground truth)")
    parser.add_argument("--config", metavar="scoring.yaml", help="per-control metrics, weights, custom metrics")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE, metavar="D",
                        help=f"the cheapest version scoring within D of the best is named (default {TOLERANCE:g})")
    parser.add_argument("--json", dest="json_out", metavar="OUT.json", help="write reports and the table as JSON")
    parser.add_argument("--html", dest="html_out", metavar="OUT.html",
                        help="write the HTML report of the best version with the quality-vs-cost comparison")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def table_lines(result: dict, tolerance: float = TOLERANCE) -> list[str]:
    """The printed comparison table (``tolerance``: the one ``result`` was computed with)."""
    lines = [f"project {result['project']}: versions against {result['reference']}", "",
             f"  {'version':<24} {'score':>7} {'Δ best':>7} {'tasks':>6} {'USD/task':>10} {'projected':>10} "
             f"{'× cost':>7}"]
    for row in result["table"]:
        lines.append(f"  {str(row['version']):<24} {num(row['score']):>7} {num(row['score_delta'], '+.3f'):>7} "
                     f"{row['n_compared']:>6} {usd_fixed(row['usd_per_task']):>10} "
                     f"{usd_fixed(row['projected_usd']):>10} "
                     f"{num(row['relative_cost'], '.2f'):>7}{'  best' if row['best'] else ''}")
    pick = result.get("cheapest_good_enough")
    best = result["table"][0] if result["table"] else None
    if pick and best and pick["version"] != best["version"]:
        cost = pick.get("relative_cost")
        lines += ["", f"  {pick['version']} scores within {tolerance:g} of {best['version']} at {cost:.2f}× its cost "
                      "per task" if cost is not None else ""]
    for control, alpha in (result.get("alpha") or {}).items():
        lines.append(f"  Krippendorff's alpha of '{control}' across {len(result['reports']) + 1} sources: {num(alpha)}")
    return lines


def run(args, settings) -> int:
    check_outputs({"--json": args.json_out, "--html": args.html_out})  # before anything is written
    quiet_http()
    from scoring.config import load_scoring_config
    from scoring.pipeline import CompareOptions, compare_versions

    options = CompareOptions(against=args.against, config=load_scoring_config(args.config), tolerance=args.tolerance,
                             progress=not args.no_progress)
    result = compare_versions(settings, args.project, args.versions, options)
    if args.json_out:
        write_json(args.json_out, result)
    if args.html_out:
        best = next(r for r in result["reports"] if r["version"] == result["table"][0]["version"])
        write_html(args.html_out, best, settings, comparison=result["table"], tolerance=args.tolerance)
    print("\n".join(table_lines(result, args.tolerance)))
    return 0
