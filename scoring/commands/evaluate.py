"""``python -m scoring evaluate``: score a version on a Label Studio JSON export, offline.

    python -m scoring evaluate --export EXPORT.json --label-config CONFIG.xml --version V \\
        [--against ground_truth|VERSION_B] [--config scoring.yaml] --json OUT.json [--html OUT.html] \\
        [--level 0.95] [--proxy VERSION_P]

Writes the report of ``scoring.engine.evaluate`` to OUT.json (and the HTML report of
``scoring.report_html`` to OUT.html), prints one summary line: the score with its interval
(``--level``, default 0.95), and with ``--proxy`` a second one, the project-wide estimate
(``scoring.compare.project_estimate``).  Bad input ends with one ``error: ...`` line and exit
status 2.  Tasks whose result does not fit the label config are skipped and listed under
"skipped"; the report is still written, and the command ends with one ``error: ...`` line and
exit status 1 (``--allow-mismatch`` turns that into a warning and exit 0, e.g. for a config
that changed since some tasks were labelled).  If no task can be scored it is exit 2.
Both output paths are checked before anything is read or written (a directory, a parent that
is a file, no permission, the same file twice: one ``error:`` line, exit 2, nothing written).
"""
from __future__ import annotations

import sys

from scoring.config import load_scoring_config
from scoring.engine import GROUND_TRUTH, SKIP_RESULT_MISMATCH, evaluate
from scoring.export import load_export
from scoring.output import check_outputs, write_html, write_json
from scoring.schema import read_label_config
from scoring.uncertainty import IntervalOptions, interval_text, parse_level, ppi_text

HELP = "score a prompt version on a Label Studio JSON export (offline), against ground truth or another version"


def add_arguments(parser) -> None:
    parser.add_argument("--export", required=True, metavar="EXPORT.json",
                        help="Label Studio JSON snapshot export with full predictions")
    parser.add_argument("--label-config", required=True, metavar="CONFIG.xml", help="the project's label config (XML)")
    parser.add_argument("--version", required=True, help="model_version of the predictions to score")
    parser.add_argument("--against", default=GROUND_TRUTH, metavar="ground_truth|VERSION_B",
                        help="reference: the ground-truth annotation (default) or another version's predictions")
    parser.add_argument("--config", metavar="scoring.yaml", help="per-control metrics, weights, custom metrics")
    parser.add_argument("--json", required=True, dest="json_out", metavar="OUT.json", help="where to write the report")
    parser.add_argument("--html", dest="html_out", metavar="OUT.html", help="also write a readable HTML report")
    parser.add_argument("--level", type=parse_level, default=0.95,
                        help="confidence level of the intervals beside every estimate (default 0.95)")
    parser.add_argument("--proxy", metavar="VERSION_P",
                        help="a strong version run on all tasks: add the project-wide estimate of the score (PPI)")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="exit 0 even when some tasks' results do not match the label config "
                             "(they are skipped and listed)")


def run(args, settings) -> int:
    check_outputs({"--json": args.json_out, "--html": args.html_out})  # before anything is written
    tasks = load_export(args.export)
    label_config = read_label_config(args.label_config)
    config = load_scoring_config(args.config)
    report = evaluate(tasks, label_config, args.version, args.against, config,
                      intervals=IntervalOptions(level=args.level))
    if args.proxy:
        from scoring.compare import project_estimate
        from scoring.engine import compile_schema

        report["ppi"] = project_estimate(tasks, compile_schema(label_config, config), report, args.proxy, args.level)
    write_json(args.json_out, report)
    if args.html_out:
        write_html(args.html_out, report, settings)
    mismatched = sum(1 for s in report["skipped"] if s.get("code") == SKIP_RESULT_MISMATCH)
    print(f"{report['version']} vs {report['reference']}: score {interval_text(report['score'], report['score_ci'])} "
          f"over {report['n_compared']} task(s), {report['n_skipped']} skipped -> {args.json_out}")
    if report.get("ppi"):
        print(ppi_text(report["ppi"]))
    if mismatched:
        level = "warning" if args.allow_mismatch else "error"
        print(f"{level}: {mismatched} task(s) skipped because their result does not match the label config; "
              f"reasons under \"skipped\" in {args.json_out}", file=sys.stderr)
        return 0 if args.allow_mismatch else 1
    return 0
