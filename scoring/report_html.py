"""One self-contained HTML file per scoring report, with plots people look at.

``render_html(report, path, ReportOptions(comparison=..., task_url=..., history=...))``
writes a single file (no external assets: figures are PNGs embedded as base64, drawn
by ``scoring.report_figures`` with matplotlib's Agg canvas without touching pyplot's
global state):

- summary: score, tasks compared and skipped, per-control metric/score/kappa/alpha, each with its
  interval when the report has them (``score_ci`` ..., see ``scoring.uncertainty``), the project-wide
  estimate (``ppi``) when present, cost; per-control bars with error bars;
- distribution of per-task agreement (histogram: the tasks below 1.0 in bins, those at exactly 1.0 in a bar
  of their own, every bar labelled with its count);
- per-label precision/recall/F1 bars with error bars and their values, one chart per control;
- confusion matrix heatmap per single-choice control (rows = reference, columns = prediction);
- quality vs cost across versions (when ``comparison`` rows from ``scoring.cost.compare_table`` are given),
  in USD per task in the plot as in the table;
- the paired comparison when the report carries a ``compare`` section (``scoring.compare.paired_comparison``:
  ``versions``, ``pairs``, ``verdict``, ``margin``, ``non_inferior``): a forest plot of the differences, their
  table and the verdict word for word, under the quality-vs-cost table, whose row of the version it names
  is marked; without one, that table names the cheapest version within ``tolerance`` of the best score
  on point estimates, and says so;
- score over time per version (when ``history`` runs from ``scoring.history`` are given; a sentence while
  all runs happened at one time);
- the lowest-agreement tasks below 1.0 (``LOWEST_N`` by default; ``scoring.pipeline.lowest_tasks``: lowest
  first, ties by numeric id) with links to open them in Label Studio (``task_url(task_id) -> str``, e.g.
  ``core.labelstudio.label_studio_task_url``; only http(s) links are emitted), and the skipped tasks.

Every piece of user text (version names, labels, task ids, notes) is escaped.
The report is rendered from selected fields only; values listed in ``secrets``
(e.g. ``settings.secrets()``) are replaced by ``***`` as a last guard.
"""
from __future__ import annotations

import html
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from core.fmt import num, ratio, usd
from core.secrets import mask
from scoring.cost import MARGIN
from scoring.pipeline import LOWEST_N, lowest_tasks
from scoring.report_calibration import calibration_section
from scoring.report_figures import (
    MAX_LABELS,
    figure_agreement_histogram,
    figure_confusion,
    figure_forest,
    figure_history,
    figure_per_control,
    figure_per_label,
    figure_quality_vs_cost,
    history_series,
    img,
)
from scoring.report_model_vs_model import model_vs_model_section
from scoring.uncertainty import interval_text, ppi_text


@dataclass(frozen=True)
class ReportOptions:
    """What goes into an HTML report besides the report itself; every field is optional.

    >>> ReportOptions().lowest_n == LOWEST_N, ReportOptions().tolerance == MARGIN
    (True, True)
    """

    comparison: list[dict] | None = None            # scoring.cost.compare_table rows: the quality-vs-cost section
    task_url: Callable[[Any], str] | None = None    # task id -> Label Studio link (only http(s) links are emitted)
    history: list[dict] | None = None               # History.list runs: the score-over-time chart
    lowest_n: int = LOWEST_N                        # lowest-agreement tasks listed
    secrets: Iterable[str] = ()                     # values masked as *** wherever they appear
    tolerance: float = MARGIN                       # the verdict's margin; names a point-estimate pick only when
                                                    # the report has no paired comparison (and so no verdict)
    model_vs_model: dict | None = None              # a report of one version against another: its own section


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


# --------------------------------------------------------------------------- html
_CSS = (
    "\n"
    "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222;"
    "padding:0 1em}\n"
    "h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}\n"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;"
    "vertical-align:top}\n"
    "th{background:#f4f6f8}td.n{text-align:right;font-variant-numeric:tabular-nums}\n"
    ".big{font-size:2em;font-weight:600}.muted{color:#666}.note{color:#8a5a00}\n"
    "img{max-width:100%;border:1px solid #eee;margin:.5em 0}.grid{display:flex;flex-wrap:wrap;gap:1em}\n"
)


def _table(header: Iterable[str], rows: Iterable[Iterable[str]], numeric: set[int] | None = None) -> str:
    """Rows are already-escaped HTML cells."""
    numeric = numeric or set()
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _safe_link(url) -> str | None:
    if not isinstance(url, str):
        return None
    return url if url.lower().startswith(("http://", "https://")) else None


def _summary(report: dict) -> str:
    parts = [
        f'<p><span class="big">{num(report.get("score"))}</span> <span class="muted">overall score'
        f'{_ci_note(report)}</span></p>',
        _table(
            ["version", "reference", "tasks", "compared", "skipped"],
            [[_e(report.get("version")), _e(report.get("reference")), num(report.get("n_tasks"), "d"),
              num(report.get("n_compared", report.get("n_tasks")), "d"), num(report.get("n_skipped"), "d")]],
            {2, 3, 4},
        ),
    ]
    per_control = report.get("per_control") or {}
    if per_control:
        kappa, alpha = report.get("kappa") or {}, report.get("alpha") or {}
        kappa_ci, alpha_ci = report.get("kappa_ci") or {}, report.get("alpha_ci") or {}
        with_ci = "score_ci" in report
        rows = [
            [_e(name), _e((v or {}).get("metric")),
             interval_text((v or {}).get("score"), (v or {}).get("ci")) if with_ci else num((v or {}).get("score")),
             num((v or {}).get("n"), "d"),
             interval_text(kappa.get(name), kappa_ci.get(name)) if with_ci else num(kappa.get(name)),
             interval_text(alpha.get(name), alpha_ci.get(name)) if with_ci and name in alpha else num(alpha.get(name))]
            for name, v in per_control.items()
        ]
        parts.append(_table(["control", "metric", "score", "n", "Cohen's kappa", "Krippendorff's alpha"], rows,
                            {2, 3, 4, 5}))
    if isinstance(report.get("ppi"), dict):
        parts.append(f"<p>{_e(ppi_text(report['ppi']))}</p>")
    return "".join(parts)


def _ci_note(report: dict) -> str:
    """`` · 95% interval [lo, hi]`` beside the overall score; nothing when the report has no intervals."""
    if "score_ci" not in report:
        return ""
    ci, level = report.get("score_ci"), report.get("ci_level") or 0.95
    text = f"[{num(ci[0])}, {num(ci[1])}]" if ci else "undefined (too few tasks or no spread)"
    return f" · {level:.0%} interval {_e(text)}"


def _cost(report: dict) -> str:
    cost = report.get("cost")
    if not isinstance(cost, dict):
        return '<p class="muted">No cost information in this report.</p>'
    latency = cost.get("latency") or {}
    errors = cost.get("errors") or {}
    rows = [
        ["USD (this version, as recorded)", usd(cost.get("usd"))],
        ["USD per task", usd(cost.get("usd_per_task"))],
        [f"projected USD for all {num(cost.get('n_project_tasks'), 'd', '?')} project tasks",
         usd(cost.get("projected_usd"))],
        ["input / output tokens", f"{num(cost.get('input_tokens'), ',d')} / {num(cost.get('output_tokens'), ',d')}"],
        ["tokens per task (in / out)",
         f"{num(cost.get('input_tokens_per_task'), ',.0f')} / {num(cost.get('output_tokens_per_task'), ',.0f')}"],
        ["LLM calls (tasks)", f"{num(cost.get('calls'), ',d')} ({num(cost.get('tasks'), ',d')})"],
        ["errors", _e(", ".join(f"{k}: {v}" for k, v in errors.items()) or "none")],
        ["answer regions dropped / answers repaired", _quality(cost)],
        ["latency p50 / p95 (s)", f"{num(latency.get('p50'), '.2f')} / {num(latency.get('p95'), '.2f')}"],
    ]
    html_ = _table(["cost", "value"], rows, {1})
    for note in cost.get("notes") or []:
        html_ += f'<p class="note">{_e(note)}</p>'
    return html_


def _quality(cost: dict) -> str:
    """What the backend dropped from / guessed in the answers (ledger totals); reports made before the
    ledger kept them say so rather than showing 0."""
    if "dropped" not in cost and "repaired" not in cost:
        return "not recorded"
    dropped = ", ".join(f"{k}: {num(v, ',d')}" for k, v in (cost.get("dropped") or {}).items())
    return f"{_e(dropped or 'none')} / {num(cost.get('repaired'), ',d', '0')}"


def _comparison(rows: list[dict], current, tolerance: float, paired: dict | None = None) -> str:
    """The quality-vs-cost table and, under it, the paired comparison's verdict word for word (its pick marked
    in the table); without a paired comparison, the cheapest version within ``tolerance`` of the best score on
    point estimates, said to be that."""
    from scoring.cost import cheapest_good_enough

    chosen = (paired or {}).get("non_inferior")

    def name(r: dict) -> str:
        text = _e(r.get("version"))
        text = f"<b>{text}</b>" if str(r.get("version")) == str(current) else text
        return text + (' <span class="muted">(the verdict\'s pick)</span>' if chosen is not None
                       and str(r.get("version")) == str(chosen) else "")

    table = _table(
        ["version", "score", "Δ vs best", "USD per task", "projected USD", "cost vs best"],
        [[name(r), num(r.get("score")), num(r.get("score_delta"), "+.3f"), usd(r.get("usd_per_task")),
          usd(r.get("projected_usd")), ratio(r.get("relative_cost"))] for r in rows],
        {1, 2, 3, 4, 5},
    )
    pick = None if paired else cheapest_good_enough(rows, tolerance)
    if paired and paired.get("verdict"):
        table += f"<p><b>Verdict:</b> {_e(paired['verdict'])}</p>"
    if pick is not None:
        table += (f'<p>Cheapest version within {tolerance:g} of the best score, on point estimates (no paired '
                  f'comparison in this report: <code>compare</code> gives the verdict): <b>{_e(pick.get("version"))}'
                  f'</b> (score {num(pick.get("score"))}, {usd(pick.get("usd_per_task"))} per task).</p>')
    unpriced = [r.get("version") for r in rows if not isinstance(r.get("usd_per_task"), (int, float))]
    if unpriced:
        table += f'<p class="note">No known price for: {_e(", ".join(map(str, unpriced)))} (left out of the chart).</p>'
    return table


def _lowest(report: dict, task_url, n: int) -> str:
    """The tasks below full agreement, lowest first (``scoring.pipeline.lowest_tasks``: ties by numeric id)."""
    scored = [t for t in report.get("tasks") or [] if isinstance(t.get("score"), (int, float))]
    if not scored:
        return '<p class="muted">No scored tasks.</p>'
    by_id = {t.get("id"): t for t in scored}
    below = lowest_tasks({"tasks": scored}, None, None, len(scored))
    low = below[:n]
    if not low:
        return f'<p>All {len(scored)} compared tasks agree fully (score 1.000).</p>'
    controls = list(report.get("per_control") or {})
    rows = []
    for row in low:
        t = by_id.get(row["id"]) or row
        tid = _e(row["id"])
        link = _safe_link(task_url(row["id"])) if task_url else None
        cell = f'<a href="{_e(link)}" target="_blank" rel="noopener">{tid}</a>' if link else tid
        pc = t.get("per_control") or {}
        rows.append([cell, num(row["score"])] + [num(pc.get(c)) for c in controls])
    tail = f'<p class="muted">… and {len(below) - n} more below 1.0.</p>' if len(below) > n else ""
    return _table(["task", "score"] + controls, rows, set(range(1, 2 + len(controls)))) + tail


def _skipped(report: dict, n: int = 50) -> str:
    skipped = report.get("skipped") or []
    if not skipped:
        return ""
    rows = [[_e(s.get("id")), _e(s.get("reason"))] for s in skipped[:n] if isinstance(s, dict)]
    more = f'<p class="muted">… and {len(skipped) - n} more.</p>' if len(skipped) > n else ""
    return f"<h2>Skipped tasks ({len(skipped)})</h2>" + _table(["task", "reason"], rows) + more


def _figures(report: dict) -> list[str]:
    """The histogram, per-label bars and confusion matrices of a report (headed; empty when nothing to draw)."""
    out = []
    fig = figure_agreement_histogram(report)
    if fig is not None:
        out += ["<h2>Agreement per task</h2>", img(fig, "histogram of per-task agreement")]
    fig = figure_per_control(report.get("per_control") or {}) if "score_ci" in report else None
    if fig is not None:
        out += ["<h2>Per control</h2>", img(fig, "per-control scores with intervals")]
    per_label = report.get("per_label") or {}
    labels = [(c, f) for c, f in ((c, figure_per_label(c, v)) for c, v in per_label.items() if isinstance(v, dict))
              if f is not None]
    if labels:
        out.append("<h2>Per label precision, recall, F1</h2>")
        for control, f in labels:
            out.append(img(f, f"per-label scores of {control}"))
            if len(per_label[control]) > MAX_LABELS:
                out.append(f'<p class="muted">{_e(control)}: first {MAX_LABELS} of {len(per_label[control])} labels '
                           'shown.</p>')
    confusion = report.get("confusion") or {}
    matrices = [(c, f) for c, f in ((c, figure_confusion(c, m)) for c, m in confusion.items() if isinstance(m, dict))
                if f is not None]
    if matrices:
        out.append('<h2>Confusion matrices</h2><div class="grid">')
        out += [img(f, f"confusion matrix of {c}") for c, f in matrices]
        out.append("</div>")
    return out


def _versions(report: dict, opts: ReportOptions) -> list[str]:
    """The quality-vs-cost comparison and the score-over-time chart, when given."""
    out = []
    paired = report.get("compare") if isinstance(report.get("compare"), dict) else None
    if opts.comparison:
        out.append("<h2>Versions: quality and cost</h2>")
        cis = {v.get("version"): v.get("score_ci") for v in (paired or {}).get("versions") or ()}
        fig = figure_quality_vs_cost(opts.comparison, current=report.get("version"), cis=cis)
        if fig is not None:
            out.append(img(fig, "quality versus cost across versions"))
        out.append(_comparison(opts.comparison, report.get("version"), opts.tolerance, paired))
    if paired:
        out += _paired(paired, with_verdict=not opts.comparison)
    if opts.history:
        fig = figure_history(opts.history)
        if fig is not None:
            out += ["<h2>Score over time</h2>", img(fig, "score over time per version")]
        elif note := _history_note(opts.history):
            out += ["<h2>Score over time</h2>", note]
    return out


def _history_note(history: list[dict]) -> str:
    """What a chart of runs made at one single time would show, as a sentence (empty: no scored run).

    >>> _history_note([{"version": "v2", "score": 0.5, "finished_at": "2026-01-02T10:00:00+00:00"}])
    '<p class="muted">One run so far (v2: 0.500 on 2026-01-02 10:00 UTC): the chart of the score over time \
appears from the next run.</p>'
    """
    points = [(name, when, score) for name, pts in history_series(history).items() for when, score in pts]
    if not points:
        return ""
    runs = "; ".join(f"{_e(name)}: {num(score)} on {when:%Y-%m-%d %H:%M} UTC" for name, when, score in points)
    what = "One run so far" if len(points) == 1 else f"{len(points)} runs so far, all at one time"
    return f'<p class="muted">{what} ({runs}): the chart of the score over time appears from the next run.</p>'


def _paired(paired: dict, with_verdict: bool) -> list[str]:
    """The paired comparison: forest plot, one row per pair, and the verdict."""
    pairs = [p for p in paired.get("pairs") or () if isinstance(p, dict)]
    out = ["<h2>Paired differences on shared tasks</h2>"]
    fig = figure_forest(pairs, paired.get("margin"))
    if fig is not None:
        out.append(img(fig, "forest plot of the paired differences"))
    out.append(_table(
        ["b − a", "shared tasks", "difference [interval]", "p-value", "Holm-adjusted p", "significant"],
        [[f"{_e(p.get('b'))} − {_e(p.get('a'))}", num(p.get("n_shared"), "d"),
          _e(interval_text(p.get("diff"), p.get("diff_ci"), "+.3f")), num(p.get("p_value"), ".3g"),
          num(p.get("p_adjusted"), ".3g"), "yes" if p.get("significant") else "no"] for p in pairs],
        {1, 2, 3, 4}))
    if with_verdict and paired.get("verdict"):
        out.append(f"<p><b>Verdict:</b> {_e(paired['verdict'])}</p>")
    return out


def _mask(page: str, secrets: Iterable[str]) -> str:
    """``page`` with every secret of four or more characters (raw or HTML-escaped) replaced by ``***``.

    >>> _mask("token s3cr3t and s&amp;cret", ["s3cr3t", "s&cret", "ab"])
    'token *** and ***'
    """
    kept = [s for s in secrets or () if s and len(s) >= 4]
    return mask(page, kept + [_e(s) for s in kept])


def build_html(report: dict, options: ReportOptions | None = None) -> str:
    """The report as one HTML string (see :func:`render_html`)."""
    opts = options or ReportOptions()
    title = f"Scoring report: {report.get('version')} vs {report.get('reference')}"
    project = report.get("project")
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">{"project " + _e(project) + " · " if project is not None else ""}'
        f'generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC'
        f'{" · run " + _e(report.get("run_id")) if report.get("run_id") else ""}</p>',
        "<h2>Summary</h2>", _summary(report),
        "<h2>Cost</h2>", _cost(report),
        *_figures(report),
        *calibration_section(report),
        *_versions(report, opts),
        *model_vs_model_section(opts.model_vs_model),
        f"<h2>Lowest-agreement tasks (below 1.0, up to {opts.lowest_n})</h2>",
        _lowest(report, opts.task_url, opts.lowest_n),
        _skipped(report),
        "</body></html>",
    ]
    return _mask("".join(out), opts.secrets)


def render_html(report: dict, path: str, options: ReportOptions | None = None) -> str:
    """Write the report as one self-contained HTML file at ``path``; returns ``path``.

    ``report`` is a scoring report (the engine's JSON contract, optionally with
    ``cost``, ``project``, ``run_id``); ``options`` adds the comparison, history,
    task links and secrets to mask (:class:`ReportOptions`).  The file is written
    to a temporary name first and moved into place, so a reader never sees half a report.
    """
    page = build_html(report, options)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(page)
    os.replace(tmp, path)
    return path
