"""The calibration section of the HTML report: reliability diagram and coverage-accuracy curve.

Drawn from ``report["calibration"]`` (what ``python -m scoring calibrate`` measured,
:func:`scoring.calibration.calibrate`); nothing when the report has none.

How to read them:

* **reliability diagram**: tasks binned by confidence (x: the bin's mean confidence, y: the share of
  its tasks whose prediction agreed with ground truth; dot size: tasks).  On the diagonal, a
  confidence of 0.8 means right 8 times in 10.  Below it the version is over-confident.  "before":
  the raw confidence; "after": the calibrated one, each task's from a map fitted without it.
* **coverage-accuracy curve**: accept the most confident x% of tasks; y is their accuracy.  A curve
  that stays high to the right means many tasks can be accepted; a flat one means the confidence does
  not separate right from wrong.
"""
from __future__ import annotations

import html

from matplotlib.figure import Figure

from scoring.report_figures import img

_BLUE, _ORANGE = "#2f6db5", "#e08a2c"


def figure_reliability(cal: dict) -> Figure | None:
    """Reliability diagram, before and after calibration."""
    before, after = cal.get("reliability_before") or [], cal.get("reliability_after") or []
    if not before:
        return None
    fig = Figure(figsize=(5, 4.4))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfectly calibrated")
    for bins, colour, name, key in ((before, _ORANGE, "raw", "ece_before"), (after, _BLUE, "calibrated", "ece_after")):
        xs, ys = [b["confidence"] for b in bins], [b["accuracy"] for b in bins]
        ax.plot(xs, ys, color=colour, marker="o", linewidth=1.2, markersize=3,
                label=f"{name} (ECE {cal.get(key) or 0:.3f})")
        ax.scatter(xs, ys, s=[10 + 2 * b["n"] for b in bins], color=colour, alpha=0.35)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence (bin mean)")
    ax.set_ylabel("share right on ground truth")
    ax.set_title(f"Reliability ({cal.get('n')} ground-truth tasks)")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def figure_coverage(cal: dict) -> Figure | None:
    """Accuracy of the most confident tasks against the share accepted."""
    points = cal.get("coverage_accuracy") or []
    if not points:
        return None
    fig = Figure(figsize=(5, 3.6))
    ax = fig.add_subplot()
    ax.plot([p["coverage"] for p in points], [p["accuracy"] for p in points], color=_BLUE, marker="o", markersize=3)
    if cal.get("accuracy") is not None:
        ax.axhline(cal["accuracy"], color="grey", linestyle=":", linewidth=1, label=f"all: {cal['accuracy']:.3f}")
        ax.legend(loc="lower left", fontsize=8)
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("coverage (share of tasks accepted, most confident first)")
    ax.set_ylabel("accuracy of the accepted")
    ax.set_title("Coverage and accuracy")
    ax.grid(alpha=0.3)
    return fig


def calibration_section(report: dict) -> list[str]:
    """The headed HTML of the section (empty when the report has no ``calibration``)."""
    cal = report.get("calibration")
    if not isinstance(cal, dict):
        return []

    def f(key: str) -> str:
        v = cal.get(key)
        return "n/a" if v is None else f"{v:.3f}"

    out = ["<h2>Confidence calibration</h2>",
           f"<p>{cal.get('n')} ground-truth tasks, {f('accuracy')} right · AUROC {f('auroc')} · ECE {f('ece_before')}"
           f" → {f('ece_after')} (held out) · Brier {f('brier_before')} → {f('brier_after')} · map: "
           f"{html.escape(str(cal.get('method')))}</p>"]
    if cal.get("warning"):
        out.append(f'<p class="muted">{html.escape(str(cal["warning"]))}</p>')
    figs = [(figure_reliability(cal), "reliability diagram"), (figure_coverage(cal), "coverage-accuracy curve")]
    out += ['<div class="grid">', *[img(fig, alt) for fig, alt in figs if fig is not None], "</div>"]
    return out
