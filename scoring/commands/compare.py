"""``python -m scoring compare``: several versions side by side: quality, paired differences, cost, a verdict.

    python -m scoring compare --project 7 --versions v1 v2 v3 [--against ground_truth|VERSION] \\
        [--margin 0.02] [--level 0.95] [--json out/compare.json] [--html out/compare.html]
    python -m scoring compare --export EXPORT.json --label-config CONFIG.xml --versions A B [C ...] \\
        [--against ground_truth|VERSION] --json OUT.json                      # offline, on an export file

Live (``--project``): pulls the project once, scores every version against the same
reference, and prints one row per version (best score first): score with its interval,
difference to the best, cost per task, projected cost, cost relative to the best; each run
is stored in the history.  Both forms then print each pair's difference on the tasks the two
versions share (``scoring.compare``: paired bootstrap interval, permutation p-value, Holm
adjusted with more than two versions) and the verdict: the cheapest version not worse than
the best by more than ``--margin`` (``--tolerance`` is its old name), or that the data cannot
tell yet and about how many more ground-truth tasks would.  Live only: Krippendorff's alpha
of each single-choice control across all the versions (and the reference).
"""
from __future__ import annotations

from core.errors import ScoringError
from core.fmt import num, usd_fixed
from scoring.cost import MARGIN
from scoring.engine import GROUND_TRUTH
from scoring.output import check_outputs, quiet_http, write_html, write_json
from scoring.uncertainty import IntervalOptions, interval_text, parse_level

HELP = "compare versions on the tasks they share (live project or export file): differences, cost, a verdict"


def add_arguments(parser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--project", type=int, help="Label Studio project id (live)")
    source.add_argument("--export", metavar="EXPORT.json", help="offline: a Label Studio JSON snapshot export")
    parser.add_argument("--label-config", metavar="CONFIG.xml", help="with --export: the project's label config")
    parser.add_argument("--versions", required=True, nargs="+", metavar="VERSION", help="two or more model versions")
    parser.add_argument("--against", default=GROUND_TRUTH, metavar="ground_truth|VERSION",
                        help="the one reference all versions are scored against (default: ground truth)")
    parser.add_argument("--config", metavar="scoring.yaml", help="per-control metrics, weights, custom metrics")
    parser.add_argument("--margin", "--tolerance", dest="margin", type=float, default=MARGIN, metavar="D",
                        help="the cheapest version whose difference to the best is surely above -D is named "
                             f"(non-inferiority margin, default {MARGIN:g}; --tolerance is its old name)")
    parser.add_argument("--level", type=parse_level, default=0.95, help="confidence level of every interval "
                        "(default 0.95)")
    parser.add_argument("--json", dest="json_out", metavar="OUT.json", help="write the comparison as JSON")
    parser.add_argument("--html", dest="html_out", metavar="OUT.html",
                        help="write the HTML report of the best version with the comparison")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def table_lines(result: dict) -> list[str]:
    """The printed comparison table of the live form, then the pairs and the verdict."""
    lines = [f"project {result['project']}: versions against {result['reference']}", "",
             f"  {'version':<24} {'score':>7} {'interval':>16} {'Δ best':>7} {'tasks':>6} {'USD/task':>10} "
             f"{'projected':>10} {'× cost':>7}"]
    cis = {v["version"]: v.get("score_ci") for v in result.get("versions") or ()}
    for row in result["table"]:
        lines.append(f"  {str(row['version']):<24} {num(row['score']):>7} {_ci(cis.get(row['version'])):>16} "
                     f"{num(row['score_delta'], '+.3f'):>7} "
                     f"{row['n_compared']:>6} {usd_fixed(row['usd_per_task']):>10} "
                     f"{usd_fixed(row['projected_usd']):>10} "
                     f"{num(row['relative_cost'], '.2f'):>7}{'  best' if row['best'] else ''}")
    lines += paired_lines(result)
    for control, alpha in (result.get("alpha") or {}).items():
        lines.append(f"  Krippendorff's alpha of '{control}' across {len(result['reports']) + 1} sources: {num(alpha)}")
    return lines


def _ci(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "[–]"


def paired_lines(result: dict) -> list[str]:
    """Each pair's difference on its shared tasks, then the verdict (both forms)."""
    lines = ["", f"  paired differences (b − a on the tasks both scored, {result['level']:.0%} intervals):"] \
        if result.get("pairs") else []
    holm = len(result.get("versions") or ()) > 2
    for p in result.get("pairs") or ():
        diff = interval_text(p["diff"], p["diff_ci"], "+.3f")
        pval = f"p = {num(p['p_value'], '.3g')}" + (f" (Holm {num(p['p_adjusted'], '.3g')})" if holm else "")
        lines.append(f"    diff {p['b']} − {p['a']}: {diff} on {p['n_shared']} shared task(s), {pval}"
                     f"{'  significant' if p['significant'] else ''}")
    if result.get("verdict"):
        lines += ["", f"  verdict: {result['verdict']}"]
    return lines


def offline_lines(result: dict) -> list[str]:
    """The printed summary of the offline form: each version's score with its interval, pairs, verdict."""
    lines = [f"versions against {result['reference']} ({result['level']:.0%} intervals):"]
    for v in result["versions"]:
        lines.append(f"  {str(v['version']):<24} {interval_text(v['score'], v['score_ci'])}  "
                     f"over {v['n_compared']} task(s)")
    return lines + paired_lines(result)


def _offline(args) -> tuple[dict, list[dict]]:
    from scoring.compare import PairOptions, paired_comparison
    from scoring.config import load_scoring_config
    from scoring.engine import evaluate
    from scoring.export import load_export
    from scoring.schema import read_label_config

    if not args.label_config:
        raise ScoringError("--export needs --label-config CONFIG.xml (an export does not carry the label config)")
    versions = list(dict.fromkeys(args.versions))
    if len(versions) < 2:
        raise ScoringError("compare needs at least two versions (--versions A B ...)")
    if args.against in versions:
        raise ScoringError(f"'{args.against}' is the reference: leave it out of --versions")
    tasks, label_config = load_export(args.export), read_label_config(args.label_config)
    config, intervals = load_scoring_config(args.config), IntervalOptions(level=args.level)
    reports = [evaluate(tasks, label_config, v, args.against, config, intervals=intervals) for v in versions]
    return paired_comparison(reports, None, PairOptions(args.margin, args.level)), reports


def run(args, settings) -> int:
    check_outputs({"--json": args.json_out, "--html": args.html_out})  # before anything is written
    if args.export:
        result, reports = _offline(args)
        table = None
    else:
        quiet_http()
        from scoring.config import load_scoring_config
        from scoring.pipeline import CompareOptions, compare_versions

        options = CompareOptions(against=args.against, config=load_scoring_config(args.config), margin=args.margin,
                                 progress=not args.no_progress, intervals=IntervalOptions(level=args.level))
        result = compare_versions(settings, args.project, args.versions, options)
        reports, table = result["reports"], result["table"]
    if args.json_out:
        write_json(args.json_out, result)
    if args.html_out:
        best = max(reports, key=lambda r: r["score"])
        section = {k: result[k] for k in ("versions", "pairs", "verdict", "margin", "level")}
        write_html(args.html_out, {**best, "compare": section}, settings, comparison=table, tolerance=args.margin)
    print("\n".join(offline_lines(result) if table is None else table_lines(result)))
    return 0
