"""One self-contained HTML file per scoring report, with plots people look at.

``render_html(report, path, comparison=..., task_url=..., history=...)`` writes
a single file (no external assets: figures are PNGs embedded as base64, drawn
with matplotlib's Agg canvas without touching pyplot's global state):

- summary: score, tasks compared and skipped, per-control metric/score/kappa/alpha, cost;
- distribution of per-task agreement (histogram);
- per-label precision/recall/F1 bars, one chart per control;
- confusion matrix heatmap per single-choice control (rows = reference, columns = prediction);
- quality vs cost across versions (when ``comparison`` rows from ``scoring.cost.compare_table`` are given);
- score over time per version (when ``history`` runs from ``scoring.history`` are given);
- the lowest-agreement tasks (20 by default) with links to open them in Label Studio
  (``task_url(task_id) -> str``, e.g. ``core.labelstudio.label_studio_task_url``; only
  http(s) links are emitted), and the skipped tasks.

Every piece of user text (version names, labels, task ids, notes) is escaped.
The report is rendered from selected fields only; values listed in ``secrets``
(e.g. ``settings.secrets()``) are replaced by ``***`` as a last guard.
"""
from __future__ import annotations

import base64
import html
import io
import math
import os
from datetime import datetime, timezone
from typing import Iterable

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from core.secrets import mask

LOWEST_N = 20
MAX_LABELS = 40
_BLUE, _ORANGE, _GREEN = "#2f6db5", "#e08a2c", "#3b9a52"


# --------------------------------------------------------------------------- helpers
def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value, spec=".3f", empty="–") -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not math.isfinite(value)):
        return empty
    return format(value, spec)


def _usd(value) -> str:
    """USD with three significant digits and at least cents; ``unknown`` when not a number.

    >>> _usd(0.000412), _usd(0.5), _usd(1234.5), _usd(None)
    ('$0.000412', '$0.50', '$1,234.50', 'unknown')
    """
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "unknown"
    if value == 0:
        return "$0"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    decimals = max(2, 2 - math.floor(math.log10(abs(value))))   # three significant digits, at least cents
    text = f"{value:.{decimals}f}"
    while text.endswith("0") and len(text.split(".")[1]) > 2:
        text = text[:-1]
    return f"${text}"


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(fig: Figure, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{_png(fig)}">'


def _short(text, n=28) -> str:
    s = str(text)
    return s if len(s) <= n else s[: n - 1] + "…"


# --------------------------------------------------------------------------- figures
def figure_agreement_histogram(report: dict) -> Figure | None:
    """Histogram of per-task scores (20 bins over [0, 1]) with the mean marked."""
    scores = [t.get("score") for t in report.get("tasks") or []]
    scores = [s for s in scores if isinstance(s, (int, float)) and math.isfinite(s)]
    if not scores:
        return None
    fig = Figure(figsize=(7, 3.2))
    ax = fig.add_subplot()
    ax.hist(scores, bins=[i / 20 for i in range(21)], color=_BLUE, edgecolor="white")
    mean = sum(scores) / len(scores)
    ax.axvline(mean, color=_ORANGE, linestyle="--", linewidth=1.5, label=f"mean {mean:.3f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("per-task agreement")
    ax.set_ylabel("tasks")
    ax.set_title(f"Agreement per task ({len(scores)} tasks)")
    ax.legend(loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return fig


def figure_per_label(control: str, labels: dict) -> Figure | None:
    """Grouped horizontal bars of precision, recall and F1 per label of one control (support in the tick label)."""
    items = [(name, v) for name, v in labels.items() if isinstance(v, dict)][:MAX_LABELS]
    if not items:
        return None
    n = len(items)
    fig = Figure(figsize=(7, 0.9 + 0.42 * n))
    ax = fig.add_subplot()
    h = 0.26
    ys = list(range(n))
    for k, (key, color) in enumerate((("precision", _GREEN), ("recall", _ORANGE), ("f1", _BLUE))):
        vals = [float(v.get(key) or 0.0) for _, v in items]
        ax.barh([y + (k - 1) * h for y in ys], vals, height=h, color=color, label=key)
    ax.set_yticks(ys, [f"{_short(name)} (n={v.get('support', 0)})" for name, v in items])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("score")
    ax.set_title(f"Per label: {_short(control, 40)}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return fig


def figure_confusion(control: str, confusion: dict) -> Figure | None:
    """Heatmap of a confusion matrix (colour = share of the reference row, text = count)."""
    labels = list(confusion.get("labels") or [])
    matrix = confusion.get("matrix") or []
    if not labels or not matrix:
        return None
    n = len(labels)
    rows = [[float(x) for x in row] for row in matrix]
    shares = [[x / sum(row) if sum(row) else 0.0 for x in row] for row in rows]
    size = max(3.6, min(12.0, 1.6 + 0.55 * n))
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.add_subplot()
    im = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ticks = [_short(label, 18) for label in labels]
    ax.set_xticks(range(n), ticks, rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center")
    ax.set_yticks(range(n), ticks)
    ax.set_xlabel("prediction")
    ax.set_ylabel("reference")
    ax.set_title(f"Confusion: {_short(control, 40)}")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{int(rows[i][j])}", ha="center", va="center", fontsize=9,
                        color="white" if shares[i][j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of reference row")
    return fig


def figure_quality_vs_cost(rows: list[dict], current: str | None = None) -> Figure | None:
    """Scatter of score against USD per 1,000 tasks, one labelled point per version.

    The report's own version is orange, the others blue; versions without a
    known price cannot be placed and are left out (the table lists them).
    """
    from matplotlib.ticker import FuncFormatter

    points = [r for r in rows if isinstance(r.get("score"), (int, float)) and isinstance(r.get("usd_per_task"), (int, float))]
    if not points:
        return None
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    xs = [r["usd_per_task"] * 1000 for r in points]
    ys = [r["score"] for r in points]
    colors = [_ORANGE if str(r.get("version")) == str(current) else _BLUE for r in points]
    ax.scatter(xs, ys, s=70, c=colors, zorder=3)
    for x, y, r in zip(xs, ys, points):
        ax.annotate(f"{_short(r.get('version'), 24)}  {_usd(x)}", (x, y), textcoords="offset points", xytext=(6, 5), fontsize=9)
    ax.set_xlabel("USD per 1,000 tasks")
    ax.set_ylabel("score")
    lo, hi = min(ys), max(ys)
    pad = max(0.02, (hi - lo) * 0.15)
    ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad) if hi <= 1 else hi + pad)
    xmax = max(xs)
    ax.set_xlim(0, xmax * 1.35 if xmax > 0 else 1.0)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _usd(v) if v else "$0"))
    ax.set_title("Quality vs cost (up and to the left is better)")
    ax.grid(alpha=0.3)
    return fig


def figure_history(history: list[dict]) -> Figure | None:
    """Score over time, one line per series (version, or "v2 vs v1" for model-vs-model runs)."""
    from scoring.history import series_name

    series: dict[str, list[tuple[datetime, float]]] = {}
    for run in history:
        score = run.get("score")
        if not isinstance(score, (int, float)) or not run.get("finished_at"):
            continue
        try:
            when = datetime.fromisoformat(str(run["finished_at"]).replace("Z", "+00:00"))
        except ValueError:
            continue
        series.setdefault(series_name(run), []).append((when, float(score)))
    if not series:
        return None
    fig = Figure(figsize=(7, 3.4))
    ax = fig.add_subplot()
    for name, pts in sorted(series.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=_short(name, 30))
    ax.set_ylabel("score")
    ax.set_title("Score over time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.autofmt_xdate()
    return fig


# --------------------------------------------------------------------------- html
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f6f8}td.n{text-align:right;font-variant-numeric:tabular-nums}
.big{font-size:2em;font-weight:600}.muted{color:#666}.note{color:#8a5a00}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}.grid{display:flex;flex-wrap:wrap;gap:1em}
"""


def _table(header: Iterable[str], rows: Iterable[Iterable[str]], numeric: set[int] | None = None) -> str:
    """Rows are already-escaped HTML cells."""
    numeric = numeric or set()
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _safe_link(url) -> str | None:
    if not isinstance(url, str):
        return None
    return url if url.lower().startswith(("http://", "https://")) else None


def _summary(report: dict) -> str:
    parts = [
        f'<p><span class="big">{_num(report.get("score"))}</span> <span class="muted">overall score</span></p>',
        _table(
            ["version", "reference", "tasks", "compared", "skipped"],
            [[_e(report.get("version")), _e(report.get("reference")), _num(report.get("n_tasks"), "d"),
              _num(report.get("n_compared", report.get("n_tasks")), "d"), _num(report.get("n_skipped"), "d")]],
            {2, 3, 4},
        ),
    ]
    per_control = report.get("per_control") or {}
    if per_control:
        kappa, alpha = report.get("kappa") or {}, report.get("alpha") or {}
        rows = [
            [_e(name), _e((v or {}).get("metric")), _num((v or {}).get("score")), _num((v or {}).get("n"), "d"),
             _num(kappa.get(name)), _num(alpha.get(name))]
            for name, v in per_control.items()
        ]
        parts.append(_table(["control", "metric", "score", "n", "Cohen's kappa", "Krippendorff's alpha"], rows, {2, 3, 4, 5}))
    return "".join(parts)


def _cost(report: dict) -> str:
    cost = report.get("cost")
    if not isinstance(cost, dict):
        return '<p class="muted">No cost information in this report.</p>'
    latency = cost.get("latency") or {}
    errors = cost.get("errors") or {}
    rows = [
        ["USD (this version, as recorded)", _usd(cost.get("usd"))],
        ["USD per task", _usd(cost.get("usd_per_task"))],
        [f"projected USD for all {_num(cost.get('n_project_tasks'), 'd', '?')} project tasks", _usd(cost.get("projected_usd"))],
        ["input / output tokens", f"{_num(cost.get('input_tokens'), ',d')} / {_num(cost.get('output_tokens'), ',d')}"],
        ["tokens per task (in / out)", f"{_num(cost.get('input_tokens_per_task'), ',.0f')} / {_num(cost.get('output_tokens_per_task'), ',.0f')}"],
        ["LLM calls (tasks)", f"{_num(cost.get('calls'), ',d')} ({_num(cost.get('tasks'), ',d')})"],
        ["errors", _e(", ".join(f"{k}: {v}" for k, v in errors.items()) or "none")],
        ["latency p50 / p95 (s)", f"{_num(latency.get('p50'), '.2f')} / {_num(latency.get('p95'), '.2f')}"],
    ]
    html_ = _table(["cost", "value"], rows, {1})
    for note in cost.get("notes") or []:
        html_ += f'<p class="note">{_e(note)}</p>'
    return html_


def _comparison(rows: list[dict], current) -> str:
    from scoring.cost import cheapest_good_enough

    table = _table(
        ["version", "score", "Δ vs best", "USD per task", "projected USD", "cost vs best"],
        [
            [("<b>" + _e(r.get("version")) + "</b>") if str(r.get("version")) == str(current) else _e(r.get("version")),
             _num(r.get("score")), _num(r.get("score_delta"), "+.3f"), _usd(r.get("usd_per_task")), _usd(r.get("projected_usd")),
             (_num(r.get("relative_cost"), ".2f") + "×") if isinstance(r.get("relative_cost"), (int, float)) else "–"]
            for r in rows
        ],
        {1, 2, 3, 4, 5},
    )
    pick = cheapest_good_enough(rows)
    if pick is not None:
        table += (f'<p>Cheapest version within 0.02 of the best score: <b>{_e(pick.get("version"))}</b> '
                  f'(score {_num(pick.get("score"))}, {_usd(pick.get("usd_per_task"))} per task).</p>')
    unpriced = [r.get("version") for r in rows if not isinstance(r.get("usd_per_task"), (int, float))]
    if unpriced:
        table += f'<p class="note">No known price for: {_e(", ".join(map(str, unpriced)))} (left out of the chart).</p>'
    return table


def _lowest(report: dict, task_url, n: int) -> str:
    tasks = [t for t in report.get("tasks") or [] if isinstance(t.get("score"), (int, float))]
    if not tasks:
        return '<p class="muted">No scored tasks.</p>'
    tasks.sort(key=lambda t: (t["score"], str(t.get("id"))))
    controls = list(report.get("per_control") or {})
    rows = []
    for t in tasks[:n]:
        tid = _e(t.get("id"))
        link = _safe_link(task_url(t.get("id"))) if task_url else None
        cell = f'<a href="{_e(link)}" target="_blank" rel="noopener">{tid}</a>' if link else tid
        pc = t.get("per_control") or {}
        rows.append([cell, _num(t["score"])] + [_num(pc.get(c)) for c in controls])
    return _table(["task", "score"] + controls, rows, set(range(1, 2 + len(controls))))


def _skipped(report: dict, n: int = 50) -> str:
    skipped = report.get("skipped") or []
    if not skipped:
        return ""
    rows = [[_e(s.get("id")), _e(s.get("reason"))] for s in skipped[:n] if isinstance(s, dict)]
    more = f'<p class="muted">… and {len(skipped) - n} more.</p>' if len(skipped) > n else ""
    return f"<h2>Skipped tasks ({len(skipped)})</h2>" + _table(["task", "reason"], rows) + more


def build_html(report: dict, *, comparison: list[dict] | None = None, task_url=None,
               history: list[dict] | None = None, lowest_n: int = LOWEST_N, secrets: Iterable[str] = ()) -> str:
    """The report as one HTML string (see :func:`render_html`)."""
    version = report.get("version")
    title = f"Scoring report: {version} vs {report.get('reference')}"
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
    ]
    fig = figure_agreement_histogram(report)
    if fig is not None:
        out += ["<h2>Agreement per task</h2>", _img(fig, "histogram of per-task agreement")]
    per_label = report.get("per_label") or {}
    figs = [(c, figure_per_label(c, labels)) for c, labels in per_label.items() if isinstance(labels, dict)]
    figs = [(c, f) for c, f in figs if f is not None]
    if figs:
        out.append("<h2>Per label precision, recall, F1</h2>")
        for control, f in figs:
            out.append(_img(f, f"per-label scores of {control}"))
            if len(per_label[control]) > MAX_LABELS:
                out.append(f'<p class="muted">{_e(control)}: first {MAX_LABELS} of {len(per_label[control])} labels shown.</p>')
    confusion = report.get("confusion") or {}
    figs = [(c, figure_confusion(c, m)) for c, m in confusion.items() if isinstance(m, dict)]
    figs = [(c, f) for c, f in figs if f is not None]
    if figs:
        out.append('<h2>Confusion matrices</h2><div class="grid">')
        out += [_img(f, f"confusion matrix of {c}") for c, f in figs]
        out.append("</div>")
    if comparison:
        out.append("<h2>Versions: quality and cost</h2>")
        fig = figure_quality_vs_cost(comparison, current=version)
        if fig is not None:
            out.append(_img(fig, "quality versus cost across versions"))
        out.append(_comparison(comparison, version))
    if history:
        fig = figure_history(history)
        if fig is not None:
            out += ["<h2>Score over time</h2>", _img(fig, "score over time per version")]
    out += [f"<h2>Lowest-agreement tasks (up to {lowest_n})</h2>", _lowest(report, task_url, lowest_n)]
    out.append(_skipped(report))
    out.append("</body></html>")
    page = "".join(out)
    kept = [s for s in secrets or () if s and len(s) >= 4]
    return mask(page, kept + [_e(s) for s in kept])


def render_html(report: dict, path: str, *, comparison: list[dict] | None = None, task_url=None,
                history: list[dict] | None = None, lowest_n: int = LOWEST_N, secrets: Iterable[str] = ()) -> str:
    """Write the report as one self-contained HTML file at ``path``; returns ``path``.

    ``report`` is a scoring report (the engine's JSON contract, optionally with
    ``cost``, ``project``, ``run_id``); ``comparison`` rows come from
    ``scoring.cost.compare_table``; ``history`` runs from ``History.list``;
    ``task_url(task_id)`` gives the Label Studio link of a task (see
    ``core.labelstudio.label_studio_task_url``); ``secrets`` are masked if they appear.
    """
    page = build_html(report, comparison=comparison, task_url=task_url, history=history, lowest_n=lowest_n, secrets=secrets)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(page)
    os.replace(tmp, path)
    return path
