"""``python -m scoring evaluate``: score a version on a Label Studio JSON export, offline.

    python -m scoring evaluate --export EXPORT.json --label-config CONFIG.xml --version V \\
        [--against ground_truth|VERSION_B] [--config scoring.yaml] --json OUT.json [--html OUT.html]

Writes the report of ``scoring.engine.evaluate`` to OUT.json (and a readable page to
OUT.html), prints one summary line.  Bad input ends with one ``error: ...`` line and
exit status 2.  Tasks whose result does not fit the label config are skipped, listed
under "skipped" and counted in a warning; if no task can be scored it is an error.
"""
from __future__ import annotations

import html
import json
import os
import sys

from backend.errors import LabelConfigError
from scoring.config import load_scoring_config
from scoring.engine import GROUND_TRUTH, evaluate
from scoring.errors import ScoringError
from scoring.export import load_export

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


def read_label_config(path: str) -> str:
    """The label config XML text of ``path``; ``LabelConfigError`` when unreadable or empty."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelConfigError(f"cannot read label config {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not text.strip():
        raise LabelConfigError(f"label config {path} is empty")
    return text


def _write(path: str, text: str) -> None:
    try:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise ScoringError(f"cannot write {path}: {exc.strerror or exc}") from None


def run(args, settings) -> int:
    tasks = load_export(args.export)
    label_config = read_label_config(args.label_config)
    config = load_scoring_config(args.config)
    report = evaluate(tasks, label_config, args.version, args.against, config)
    _write(args.json_out, json.dumps(report, ensure_ascii=False, indent=1))
    if args.html_out:
        _write(args.html_out, render_html(report))
    mismatched = sum(1 for s in report["skipped"] if s["reason"].startswith("result does not match"))
    if mismatched:
        print(f"warning: {mismatched} task(s) skipped because their result does not match the label config; "
              f"reasons under \"skipped\" in {args.json_out}", file=sys.stderr)
    print(f"{report['version']} vs {report['reference']}: score {report['score']:.3f} over "
          f"{report['n_compared']} task(s), {report['n_skipped']} skipped -> {args.json_out}")
    return 0


# ---------------------------------------------------------------- HTML

def _fmt(x) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.3f}"
    return html.escape(str(x))


def _table(head: list, rows: list) -> str:
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def render_html(report: dict) -> str:
    """A self-contained HTML page of an evaluate report (no scripts, no external assets)."""
    e = html.escape
    parts = [f"<h1>{e(report['version'])} vs {e(str(report['reference']))}</h1>",
             f"<p>Score <b>{_fmt(report['score'])}</b> over {report['n_compared']} of {report['n_tasks']} tasks "
             f"({report['n_skipped']} skipped).</p>",
             "<h2>Per control</h2>",
             _table(["control", "metric", "score", "n", "weight", "kappa", "alpha"],
                    [[n, pc["metric"], pc["score"], pc["n"], pc["weight"], report["kappa"].get(n), report["alpha"].get(n)]
                     for n, pc in report["per_control"].items()])]
    for ctrl, labels in report["per_label"].items():
        parts.append(f"<h2>Per label: {e(ctrl)}</h2>")
        parts.append(_table(["label", "precision", "recall", "f1", "support"],
                            [[lab, v["precision"], v["recall"], v["f1"], v["support"]] for lab, v in labels.items()]))
    for ctrl, cm in report["confusion"].items():
        parts.append(f"<h2>Confusion: {e(ctrl)} (rows = reference, columns = prediction)</h2>")
        parts.append(_table([""] + cm["labels"], [[lab] + row for lab, row in zip(cm["labels"], cm["matrix"])]))
    worst = sorted(report["tasks"], key=lambda t: t["score"])[:20]
    parts.append("<h2>Lowest-scoring tasks</h2>")
    parts.append(_table(["task", "score"] + list(report["per_control"]),
                        [[t["id"], t["score"]] + [t["per_control"].get(n) for n in report["per_control"]] for t in worst]))
    if report["skipped"]:
        parts.append(f"<h2>Skipped tasks ({len(report['skipped'])}; first 100)</h2>")
        parts.append(_table(["task", "reason"], [[s["id"], s["reason"]] for s in report["skipped"][:100]]))
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1em}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Scoring: {e(report['version'])}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
