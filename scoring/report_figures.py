"""The figures of the HTML report (``scoring.report_html``): matplotlib, no pyplot state.

Each ``figure_*`` function returns a ``matplotlib.figure.Figure`` drawn on the Agg
canvas (never pyplot's global state, so it is safe in a worker), or ``None`` when
the report has nothing to draw; :func:`img` embeds one as a base64 PNG ``<img>``.
"""
from __future__ import annotations

import base64
import html
import io
from datetime import datetime, timezone
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from core.fmt import is_number, num, usd

MAX_LABELS = 40  # per-label bars drawn per control
FULL = 1.0 - 1e-9  # a task scoring at least this agrees fully (float sums of 1.0s may fall a hair short)
_BINS = 20  # histogram bins over [0, 1) for the tasks below full agreement
_AXIS_PAD = 12  # points between a confusion matrix's tick labels and its axis names
COST_AXIS = "USD per task"  # the quality-vs-cost x axis: the unit of the tables ("USD per task") and the CLI
_MIN_PAD = 0.025  # least room (in score) above and below the quality-vs-cost points
_BLUE, _ORANGE, _GREEN = "#2f6db5", "#e08a2c", "#3b9a52"
_ERR: dict[str, Any] = {"ecolor": "#333333", "elinewidth": 1, "capsize": 2}  # error bars: the intervals


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def img(fig: Figure, alt: str) -> str:
    """``fig`` as an ``<img>`` element with the PNG inline (``alt`` is escaped)."""
    return f'<img alt="{html.escape(alt, quote=True)}" src="data:image/png;base64,{_png(fig)}">'


def errors(values: list, cis: list) -> list[list[float]]:
    """Asymmetric error-bar lengths ``[[below...], [above...]]`` for matplotlib's ``xerr``/``yerr``;
    an undefined interval (``None``) draws no bar (NaN), it is never invented.  Lengths are
    clipped at 0 (float rounding, or a percentile interval that does not hold the estimate).

    >>> errors([0.5, 0.9], [[0.4, 0.7], None])
    [[0.09999999999999998, nan], [0.19999999999999996, nan]]
    """
    nan = float("nan")
    lo = [max(0.0, v - ci[0]) if ci else nan for v, ci in zip(values, cis, strict=True)]
    hi = [max(0.0, ci[1] - v) if ci else nan for v, ci in zip(values, cis, strict=True)]
    return [lo, hi]


def short(text, n: int = 28) -> str:
    """``text`` cut to ``n`` characters with an ellipsis.

    >>> short("reviews-gpt-4o-mini-v1", 12), short("v1")
    ('reviews-gpt…', 'v1')
    """
    s = str(text)
    return s if len(s) <= n else s[: n - 1] + "…"


def decimals(step: float, least: int = 2) -> int:
    """The decimals (at least ``least``) that write every multiple of ``step`` exactly: one format for all
    the ticks of an axis.

    >>> decimals(0.0002), decimals(0.025), decimals(0.2), decimals(0.5, 0)
    (4, 3, 2, 1)
    """
    places = least
    while places < 12 and abs(round(step, places) - step) > abs(step) * 1e-6:
        places += 1
    return places


# --------------------------------------------------------------------------- figures
def figure_agreement_histogram(report: dict) -> Figure | None:
    """Histogram of per-task scores: 20 bins over [0, 1) for the tasks below full agreement and a bar of
    its own, in green, for the tasks at exactly 1.0, every non-empty bar labelled with its count (with most
    tasks at 1.0 the others would otherwise be slivers nobody sees); the counts and the mean in the title.

    >>> fig = figure_agreement_histogram({"tasks": [{"score": 1.0}] * 58 + [{"score": 0.67}, {"score": 0.83}]})
    >>> sorted(t.get_text() for t in fig.axes[0].texts if t.get_text()), fig.axes[0].get_title()
    (['1', '1', '58'], 'Agreement per task: 58 of 60 agree fully, 2 below 1.0 (mean 0.992)')
    """
    scores = [t.get("score") for t in report.get("tasks") or []]
    scores = [float(s) for s in scores if is_number(s)]
    if not scores:
        return None
    below = [s for s in scores if s < FULL]
    counts = [0] * _BINS
    for s in below:
        counts[min(_BINS - 1, max(0, int(s * _BINS)))] += 1
    fig = Figure(figsize=(7, 3.2))
    ax = fig.add_subplot()
    width = 1 / _BINS
    parts = [ax.bar([i * width for i in range(_BINS)], counts, width=width, align="edge", color=_BLUE,
                    edgecolor="white", label="below 1.0"),
             ax.bar([1 + 1.5 * width], [len(scores) - len(below)], width=width * 1.6, color=_GREEN,
                    edgecolor="white", label="exactly 1.0")]
    for bars in parts:
        ax.bar_label(bars, labels=[str(int(b.get_height())) if b.get_height() else "" for b in bars],
                     padding=2, fontsize=9, fontweight="bold")
    ax.set_xlim(0, 1 + 3 * width)
    ax.set_xticks([0, 0.2, 0.4, 0.6, 0.8, 1 + 1.5 * width], ["0", "0.2", "0.4", "0.6", "0.8", "1.0"])
    ax.set_ylim(0, max(counts + [len(scores) - len(below)]) * 1.15)
    ax.set_xlabel("per-task agreement")
    ax.set_ylabel("tasks")
    ax.set_title(f"Agreement per task: {len(scores) - len(below)} of {len(scores)} agree fully, "
                 f"{len(below)} below 1.0 (mean {sum(scores) / len(scores):.3f})")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def figure_per_label(control: str, labels: dict) -> Figure | None:
    """Grouped horizontal bars of precision, recall and F1 per label of one control (support in the tick label),
    each with its interval as an error bar and its value printed past the end of the bar (or of its error bar).

    >>> fig = figure_per_label("sentiment", {"Neutral": {"precision": 0.95, "recall": 1.0, "f1": None, "support": 20}})
    >>> [t.get_text() for t in fig.axes[0].texts]
    ['0.95', '1.00', '–']
    """
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
        bars = ax.barh([y + (k - 1) * h for y in ys], vals, height=h, color=color, label=key,
                       xerr=errors(vals, [v.get(f"{key}_ci") for _, v in items]), error_kw=_ERR)
        ax.bar_label(bars, labels=[num(v.get(key), ".2f") for _, v in items], padding=3, fontsize=7)
    ax.set_yticks(ys, [f"{short(name)} (n={v.get('support', 0)})" for name, v in items])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.12)    # room right of 1.0 for the values
    ax.set_xticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_xlabel("score")
    ax.set_title(f"Per label: {short(control, 40)}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return fig


def figure_per_control(per_control: dict) -> Figure | None:
    """Horizontal bars of each control's score with its interval as an error bar (metric in the tick label)."""
    items = [(name, v) for name, v in per_control.items()
             if isinstance(v, dict) and isinstance(v.get("score"), (int, float))][:MAX_LABELS]
    if not items:
        return None
    fig = Figure(figsize=(7, 0.9 + 0.42 * len(items)))
    ax = fig.add_subplot()
    vals = [float(v["score"]) for _, v in items]
    ax.barh(range(len(items)), vals, height=0.6, color=_BLUE, xerr=errors(vals, [v.get("ci") for _, v in items]),
            error_kw=_ERR)
    ax.set_yticks(range(len(items)), [f"{short(name)} ({v.get('metric')})" for name, v in items])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("score (bars: interval)")
    ax.set_title("Per control")
    ax.grid(axis="x", alpha=0.3)
    return fig


def figure_forest(pairs: list[dict], margin: float | None = None) -> Figure | None:
    """Forest plot of paired differences: one row per pair (b − a on its shared tasks), the point
    and its interval; a line at 0 and, when given, at ``-margin``."""
    rows = [p for p in pairs if isinstance(p.get("diff"), (int, float))]
    if not rows:
        return None
    fig = Figure(figsize=(8, 1.2 + 0.5 * len(rows)))
    ax = fig.add_subplot()
    ys = list(range(len(rows)))
    diffs = [float(p["diff"]) for p in rows]
    colors = [_GREEN if p.get("significant") else _BLUE for p in rows]
    ax.errorbar(diffs, ys, xerr=errors(diffs, [p.get("diff_ci") for p in rows]), fmt="none", **_ERR)
    ax.scatter(diffs, ys, s=50, c=colors, zorder=3)
    ax.axvline(0, color="#555555", linewidth=1)
    if margin:
        ax.axvline(-abs(margin), color=_ORANGE, linestyle="--", linewidth=1, label=f"−margin ({abs(margin):g})")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(ys, [f"{short(p['b'], 26)} − {short(p['a'], 26)} (n={p.get('n_shared')})" for p in rows])
    ax.invert_yaxis()
    ax.set_xlabel("difference in mean score on shared tasks (green: significant after Holm)")
    ax.set_title("Paired differences")
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
    ticks = [short(label, 18) for label in labels]
    ax.set_xticks(range(n), ticks, rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center")
    ax.set_yticks(range(n), ticks)
    # the axis names stand apart from the tick labels (bold, well below / left of them): plain and close,
    # "prediction" under the middle tick read as part of it ("Negative prediction")
    ax.set_xlabel("prediction", labelpad=_AXIS_PAD, fontweight="bold")
    ax.set_ylabel("reference", labelpad=_AXIS_PAD, fontweight="bold")
    ax.set_title(f"Confusion: {short(control, 40)}")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{int(rows[i][j])}", ha="center", va="center", fontsize=9,
                        color="white" if shares[i][j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of reference row")
    return fig


def figure_quality_vs_cost(rows: list[dict], current: str | None = None, cis: dict | None = None) -> Figure | None:
    """Scatter of score against USD per task (the unit of the tables and the CLI), one labelled point per version.

    The report's own version is orange, the others blue; versions without a
    known price cannot be placed and are left out (the table lists them).
    ``cis`` (version -> score interval) adds vertical error bars.
    """
    from matplotlib.ticker import FuncFormatter

    points = [r for r in rows
              if isinstance(r.get("score"), (int, float)) and isinstance(r.get("usd_per_task"), (int, float))]
    if not points:
        return None
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    xs = [float(r["usd_per_task"]) for r in points]
    ys = [r["score"] for r in points]
    colors = [_ORANGE if str(r.get("version")) == str(current) else _BLUE for r in points]
    ax.scatter(xs, ys, s=70, c=colors, zorder=3)
    if cis:
        ax.errorbar(xs, ys, yerr=errors(ys, [cis.get(r.get("version")) for r in points]), fmt="none", zorder=2, **_ERR)
    for x, y, r in zip(xs, ys, points, strict=True):
        ax.annotate(f"{short(r.get('version'), 24)}  {usd(x)}", (x, y), textcoords="offset points", xytext=(6, 5),
                    fontsize=9)
    ax.set_xlabel(COST_AXIS)
    ax.set_ylabel("score")
    ends = [e for r in points for e in ((cis or {}).get(r.get("version")) or ())]
    lo, hi = min(ys + ends), max(ys + ends)
    pad = max(_MIN_PAD, (hi - lo) * 0.15)
    ax.set_ylim(max(0.0, lo - pad), min(1.01, hi + pad) if hi <= 1 else hi + pad)
    xmax = max(xs)
    ax.set_xlim(0, xmax * 1.35 if xmax > 0 else 1.0)
    ticks = list(ax.xaxis.get_majorticklocs())
    places = decimals(ticks[1] - ticks[0]) if len(ticks) > 1 else 2
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"${v:,.{places}f}" if v else "$0"))
    ax.set_title("Quality vs cost (up and to the left is better)")
    ax.grid(alpha=0.3)
    return fig


def history_series(history: list[dict]) -> dict[str, list[tuple[datetime, float]]]:
    """The scored runs of ``history`` by series (version, or "v2 vs v1"), oldest first; runs without a score
    or a readable ``finished_at`` are left out.

    >>> history_series([{"version": "v2", "score": 0.5, "finished_at": "2026-01-02T10:00:00Z"},
    ...                 {"version": "v2", "score": None, "finished_at": "2026-01-02T11:00:00Z"}])
    {'v2': [(datetime.datetime(2026, 1, 2, 10, 0, tzinfo=datetime.timezone.utc), 0.5)]}
    """
    from scoring.history import series_name

    series: dict[str, list[tuple[datetime, float]]] = {}
    for run in history:
        score = run.get("score")
        if not is_number(score) or not isinstance(score, (int, float)) or not run.get("finished_at"):
            continue
        try:
            when = datetime.fromisoformat(str(run["finished_at"]).replace("Z", "+00:00"))
        except ValueError:
            continue
        when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)   # naive times are UTC (and comparable)
        series.setdefault(series_name(run), []).append((when, float(score)))
    return {name: sorted(pts) for name, pts in sorted(series.items())}


def figure_history(history: list[dict]) -> Figure | None:
    """Score over time, one line per series (version, or "v2 vs v1" for model-vs-model runs); ``None`` when
    the runs happened at fewer than two distinct times (one dot on an arbitrary time axis says nothing: the
    report shows a sentence instead).  The date axis is concise: runs on one day are labelled by the hour.
    """
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    series = history_series(history)
    if len({when for pts in series.values() for when, _ in pts}) < 2:
        return None
    fig = Figure(figsize=(7, 3.4))
    ax = fig.add_subplot()
    for name, pts in series.items():
        times: Any = [p[0] for p in pts]  # matplotlib plots datetimes (its stubs say numbers)
        ax.plot(times, [p[1] for p in pts], marker="o", label=short(name, 30))
    locator = AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_ylabel("score")
    ax.set_title("Score over time (UTC)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig
