"""The HTML report: self-contained, escaped, plots embedded, lowest-agreement tasks linked."""
import base64
import re

import pytest

from core.labelstudio import label_studio_task_url
from scoring.cost import MARGIN, compare_table, cost_section
from scoring.report_html import ReportOptions, render_html

EVIL = "<script>alert('x')</script>"
SECRET = "fake-secret-for-tests"


def sample_report(n=60):
    tasks = [{"id": 100 + i, "score": (i % 10) / 10,
              "per_control": {"sentiment": float(i % 2), "summary": (i % 10) / 10}}
             for i in range(n)]
    labels = ["pos", "neg", EVIL]
    return {
        "version": f"v2{EVIL}", "reference": "ground_truth", "project": 4, "run_id": "run-1",
        "n_tasks": n, "n_skipped": 2, "score": 0.45,
        "per_control": {"sentiment": {"metric": "exact_match", "score": 0.5, "n": n},
                        "summary": {"metric": "levenshtein", "score": 0.45, "n": n}},
        "per_label": {"sentiment": {lab: {"precision": 0.5, "recall": 0.4, "f1": 0.444, "support": 10}
                                    for lab in labels}},
        "confusion": {"sentiment": {"labels": labels, "matrix": [[5, 1, 0], [2, 6, 1], [0, 1, 3]]}},
        "kappa": {"sentiment": 0.41}, "alpha": {"sentiment": 0.4},
        "tasks": tasks,
        "skipped": [{"id": 7, "reason": f"no ground truth {EVIL}"},
                    {"id": 8, "reason": "result does not match the config"}],
        "cost": cost_section({"calls": 60, "tasks": 60, "input_tokens": 6000, "output_tokens": 600, "usd": 0.012,
                              "usd_complete": True, "errors": {}, "latency_p50": 0.5, "latency_p95": 1.0}, n, 600),
    }


def images(page):
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_full_report_is_self_contained_escaped_and_has_all_plots(tmp_path):
    report = sample_report()
    report["cost"]["notes"].append(f"leak {SECRET}")
    rows = compare_table([report, {"version": "v1", "reference": "ground_truth", "score": 0.5, "n_tasks": 60,
                                   "cost": {"usd_per_task": 0.0006, "projected_usd": 0.36}}])
    history = [{"version": "v2", "reference": "ground_truth", "score": s, "finished_at": f"2026-01-0{d}T00:00:00+00:00"}
               for d, s in [(1, 0.3), (2, 0.45)]]
    path = render_html(report, str(tmp_path / "out" / "r.html"), ReportOptions(
        comparison=rows, history=history, task_url=label_studio_task_url("http://127.0.0.1:8080", 4), secrets=[SECRET]))
    page = open(path, encoding="utf-8").read()
    assert path.endswith("r.html")
    # self-contained: no scripts, no external resources
    assert "<script" not in page and "<link" not in page and 'src="http' not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert SECRET not in page and "leak ***" in page
    # histogram, per-label bars, confusion, quality-vs-cost, history = 5 PNGs
    pngs = images(page)
    assert len(pngs) == 5 and all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    for title in ("Summary", "Cost", "Agreement per task", "Per label", "Confusion", "quality and cost",
                  "Score over time",
                  "Lowest-agreement tasks", "Skipped tasks (2)"):
        assert title in page
    assert "0.410" in page and "0.400" in page           # kappa and alpha
    assert "$0.0002" in page and "$0.12" in page          # USD per task and projected for 600 tasks


def test_lowest_tasks_sorted_limited_and_linked(tmp_path):
    report = sample_report()
    options = ReportOptions(task_url=label_studio_task_url("http://ls:8080/", 4), lowest_n=7)
    page = open(render_html(report, str(tmp_path / "r.html"), options), encoding="utf-8").read()
    section = page.split("Lowest-agreement tasks")[1]
    links = re.findall(r'href="http://ls:8080/projects/4/data\?task=(\d+)"', section)
    assert len(links) == 7
    # scores 0.0 are tasks 100, 110, 120, ... (i % 10 == 0); ties by id
    assert links[:6] == ["100", "110", "120", "130", "140", "150"]
    assert links[6] == "101"


def test_unsafe_links_are_not_emitted_and_no_optional_sections(tmp_path):
    report = sample_report(5)
    options = ReportOptions(task_url=lambda tid: f"javascript:alert({tid})")
    page = open(render_html(report, str(tmp_path / "r.html"), options), encoding="utf-8").read()
    assert "javascript:" not in page and "<a " not in page
    assert "quality and cost" not in page and "Score over time" not in page
    assert len(images(page)) == 3


def test_minimal_report_renders(tmp_path):
    page = open(render_html({"version": "v1", "reference": "v0", "n_tasks": 0, "n_skipped": 3, "score": None},
                            str(tmp_path / "r.html")), encoding="utf-8").read()
    assert "No scored tasks" in page and "No cost information" in page and images(page) == []


def test_comparison_names_the_tolerance_it_was_given(tmp_path):
    """Without a paired comparison (no verdict) the sentence under the comparison table states the tolerance
    the pick was made with (default: the verdict's margin, never a hard-coded number) and that it is a
    point-estimate pick, not the verdict."""
    report = sample_report(5)
    rows = compare_table([report, {"version": "v1", "reference": "ground_truth", "score": 0.45 - MARGIN - 0.01,
                                   "n_tasks": 5, "cost": {"usd_per_task": 0.00001, "projected_usd": 0.006}}])
    default = open(render_html(report, str(tmp_path / "a.html"), ReportOptions(comparison=rows)),
                   encoding="utf-8").read()
    said = f"Cheapest version within {MARGIN:g} of the best score, on point estimates (no paired comparison"
    assert said in default and "gives the verdict): <b>v2" in default   # v1 is below the margin: not good enough
    wider = open(render_html(report, str(tmp_path / "b.html"), ReportOptions(comparison=rows, tolerance=MARGIN + 0.02)),
                 encoding="utf-8").read()
    assert f"within {MARGIN + 0.02:g} of the best score" in wider and "gives the verdict): <b>v1</b>" in wider
    assert "Verdict" not in wider


def with_intervals(report):
    """sample_report with the interval keys of scoring.uncertainty, one of them undefined."""
    report = dict(report, score_ci=[0.4, 0.5], ci_level=0.9, kappa_ci={"sentiment": [0.3, 0.52]},
                  alpha_ci={"sentiment": None})
    report["per_control"] = {name: dict(pc, ci=[pc["score"] - 0.05, pc["score"] + 0.05])
                             for name, pc in report["per_control"].items()}
    report["per_label"] = {c: {lab: dict(v, precision_ci=[0.4, 0.6], recall_ci=None, f1_ci=[0.3, 0.5])
                               for lab, v in labels.items()} for c, labels in report["per_label"].items()}
    return report


def test_intervals_in_the_summary_and_error_bars(tmp_path):
    report = with_intervals(sample_report())
    report["ppi"] = {"proxy": "big-v1", "score": 0.47, "ci": [0.45, 0.49], "classical_ci": [0.4, 0.5],
                     "n_labeled": 60, "n_unlabeled": 940}
    page = open(render_html(report, str(tmp_path / "r.html")), encoding="utf-8").read()
    assert "overall score · 90% interval [0.400, 0.500]" in page
    assert "0.500 [0.450, 0.550]" in page                          # per-control score with its interval
    assert "0.410 [0.300, 0.520]" in page and "0.400 [–]" in page  # kappa; alpha's interval undefined
    assert "project-wide estimate with proxy big-v1: 0.470 [0.450, 0.490]" in page
    assert "<h2>Per control</h2>" in page and 'alt="per-control scores with intervals"' in page
    assert len(images(page)) == 4                                  # histogram, per control, per label, confusion


def test_paired_comparison_forest_plot_and_verdict(tmp_path):
    report = with_intervals(sample_report(5))
    verdict = f"v1 is not worse than v2{EVIL} by more than 0.05 (diff -0.03 [-0.04, -0.02], 5 shared tasks)"
    compare = {"margin": 0.05, "level": 0.95, "verdict": verdict,
               "versions": [{"version": report["version"], "score": 0.45, "score_ci": [0.4, 0.5], "n_compared": 5},
                            {"version": "v1", "score": 0.42, "score_ci": None, "n_compared": 5}],
               "pairs": [{"a": report["version"], "b": "v1", "n_shared": 5, "diff": -0.03, "diff_ci": [-0.04, -0.02],
                          "p_value": 0.03, "p_adjusted": 0.03, "significant": True, "per_control": {}}]}
    rows = compare_table([report, {"version": "v1", "reference": "ground_truth", "score": 0.42, "n_tasks": 5,
                                   "cost": {"usd_per_task": 0.00001, "projected_usd": 0.006}}])
    page = open(render_html(dict(report, compare=compare), str(tmp_path / "r.html"),
                            ReportOptions(comparison=rows, tolerance=0.05)), encoding="utf-8").read()
    assert "Paired differences on shared tasks" in page and 'alt="forest plot of the paired differences"' in page
    assert "-0.030 [-0.040, -0.020]" in page
    assert page.count("<b>Verdict:</b>") == 1 and EVIL not in page  # once, under the quality-vs-cost table, escaped
    assert "Cheapest version within" not in page                     # the verdict replaces the point-estimate pick
    alone = open(render_html(dict(report, compare=compare), str(tmp_path / "o.html")), encoding="utf-8").read()
    assert alone.count("<b>Verdict:</b>") == 1 and "quality and cost" not in alone   # offline compare: no costs


def test_figures_draw_intervals_and_skip_undefined_ones():
    from scoring.report_figures import figure_forest, figure_per_control

    fig = figure_per_control({"a": {"score": 0.8, "ci": [0.7, 0.9], "metric": "exact"},
                              "b": {"score": 1.0, "ci": None}})
    (bars,) = [c for c in fig.axes[0].containers if hasattr(c, "lines")]
    segments = [s.tolist() for s in bars.lines[2][0].get_segments()]
    assert segments == [[[0.7, 0.0], [0.9, 0.0]], []]             # a: its interval; b: undefined, no bar drawn
    forest = figure_forest([{"a": "x", "b": "y", "n_shared": 3, "diff": 0.1, "diff_ci": None, "significant": False}],
                           margin=0.02)
    assert forest is not None and figure_forest([{"a": "x", "b": "y", "diff": None}]) is None
    assert figure_per_control({}) is None


# --------------------------------------------------------------------------- issue 12: what a new user found
def lowest_section(page):
    return page.split("Lowest-agreement tasks")[1].split("<h2>")[0]


def test_lowest_table_lists_tasks_below_one_by_score_then_numeric_id(tmp_path):
    """Ties were sorted by the id as a string (1, 10, 2, 20) and the table was padded with tasks at 1.000."""
    report = sample_report(5)
    report["tasks"] = ([{"id": i, "score": 0.5, "per_control": {}} for i in (20, 2, 10, 1)]
                       + [{"id": i, "score": 1.0, "per_control": {}} for i in range(3, 10)]
                       + [{"id": 30, "score": 0.25, "per_control": {}}])
    section = lowest_section(open(render_html(report, str(tmp_path / "r.html")), encoding="utf-8").read())
    assert re.findall(r"<tr><td>(\d+)</td>", section) == ["30", "1", "2", "10", "20"]
    assert "1.000" not in section and "more below 1.0" not in section
    short = lowest_section(open(render_html(report, str(tmp_path / "s.html"), ReportOptions(lowest_n=2)),
                                encoding="utf-8").read())
    assert re.findall(r"<tr><td>(\d+)</td>", short) == ["30", "1"] and "… and 3 more below 1.0." in short


def test_lowest_table_says_when_every_task_agrees_fully(tmp_path):
    report = sample_report(5)
    report["tasks"] = [{"id": i, "score": 1.0} for i in range(4)] + [{"id": 9, "score": 0.1 + 0.2 + 0.7}]
    section = lowest_section(open(render_html(report, str(tmp_path / "r.html")), encoding="utf-8").read())
    assert "All 5 compared tasks agree fully (score 1.000)." in section and "<table>" not in section


def test_lowest_tasks_of_the_live_report_order_string_ids_numerically():
    from scoring.pipeline import lowest_tasks

    tasks = [{"id": str(i), "score": 0.5} for i in (20, 2, 10, 1)] + [{"id": "7", "score": 1.0}]
    assert [r["id"] for r in lowest_tasks({"tasks": tasks}, None, 1)] == ["1", "2", "10", "20"]
    assert lowest_tasks({"tasks": [{"id": 1, "score": 1.0}, {"id": 2, "score": None}]}, None, 1) == []


def test_histogram_gives_full_agreement_a_bar_of_its_own_and_counts_every_bar():
    from scoring.report_figures import figure_agreement_histogram

    fig = figure_agreement_histogram({"tasks": [{"score": 1.0}] * 57 + [{"score": s} for s in (0.67, 0.83, 0.84)]})
    ax = fig.axes[0]
    full = [c for c in ax.containers if c.get_label() == "exactly 1.0"]
    below = [c for c in ax.containers if c.get_label() == "below 1.0"]
    assert [b.get_height() for b in full[0]] == [57]
    assert sorted(b.get_height() for b in below[0] if b.get_height()) == [1, 2]      # [0.65, 0.7) and [0.8, 0.85)
    assert full[0][0].get_x() > 1.0                                                    # apart from the [0.95, 1) bin
    assert sorted(t.get_text() for t in ax.texts if t.get_text()) == ["1", "2", "57"]
    assert ax.get_title() == "Agreement per task: 57 of 60 agree fully, 3 below 1.0 (mean 0.989)"


def test_per_label_bars_print_their_values():
    from scoring.report_figures import figure_per_label

    fig = figure_per_label("sentiment", {"pos": {"precision": 0.5, "recall": 0.4, "f1": 0.444, "support": 10,
                                                 "precision_ci": [0.3, 0.7]},
                                         "neg": {"precision": 1.0, "recall": None, "f1": 0.9, "support": 3}})
    assert [t.get_text() for t in fig.axes[0].texts] == ["0.50", "1.00", "0.40", "–", "0.44", "0.90"]
    assert fig.axes[0].get_xlim()[1] > 1.0                 # room for a value past a bar that reaches 1.0


def test_confusion_axis_names_stand_clear_of_the_tick_labels():
    """"prediction" sat 5 px under the middle tick label and read as part of it ("Negative prediction")."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from scoring.report_figures import figure_confusion

    for labels in (["Positive", "Negative", "Neutral"], ["a", "bb", "a much longer label", "d", "e"]):
        n = len(labels)
        fig = figure_confusion("sentiment", {"labels": labels, "matrix": [[1] * n] * n})
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        renderer, ax = canvas.get_renderer(), fig.axes[0]
        xname, yname = ax.xaxis.label.get_window_extent(renderer), ax.yaxis.label.get_window_extent(renderer)
        xticks = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
        yticks = [t.get_window_extent(renderer) for t in ax.get_yticklabels() if t.get_text()]
        assert min(t.y0 for t in xticks) - xname.y1 >= 10            # px between the lowest tick label and the name
        assert min(t.x0 for t in yticks) - yname.x1 >= 10
        assert ax.xaxis.label.get_fontweight() == "bold" and ax.yaxis.label.get_fontweight() == "bold"


def test_quality_vs_cost_plot_uses_usd_per_task_like_the_table(tmp_path):
    """The plot said USD per 1,000 tasks while the table (and the CLI) say USD per task."""
    from scoring.report_figures import figure_quality_vs_cost

    report = sample_report(5)
    rows = compare_table([report, {"version": "v1", "reference": "ground_truth", "score": 0.4, "n_tasks": 5,
                                   "cost": {"usd_per_task": 0.0000706, "projected_usd": 0.04}}])
    fig = figure_quality_vs_cost(rows, current=report["version"])
    ax = fig.axes[0]
    assert ax.get_xlabel() == "USD per task"
    xs = sorted(float(x) for x, _ in ax.collections[0].get_offsets())
    assert xs == pytest.approx(sorted(r["usd_per_task"] for r in rows))
    notes = [t.get_text() for t in ax.texts]
    assert any(t.endswith("$0.0000706") for t in notes) and any(t.endswith("$0.0002") for t in notes)
    page = open(render_html(report, str(tmp_path / "r.html"), ReportOptions(comparison=rows)),
                encoding="utf-8").read()
    assert "<th>USD per task</th>" in page and "$0.0000706" in page and "1,000" not in page


def test_history_with_one_run_is_a_sentence_and_runs_on_one_day_are_labelled_by_the_hour(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from scoring.report_figures import figure_history

    one = [{"version": "v2", "reference": "ground_truth", "score": 0.45, "finished_at": "2026-12-02T09:10:00+00:00"}]
    assert figure_history(one) is None
    page = open(render_html(sample_report(5), str(tmp_path / "r.html"), ReportOptions(history=one)),
                encoding="utf-8").read()
    assert "<h2>Score over time</h2>" in page and len(images(page)) == 3      # histogram, per label, confusion
    assert "One run so far (v2: 0.450 on 2026-12-02 09:10 UTC)" in page
    day = [{"version": v, "reference": "ground_truth", "score": s, "finished_at": f"2026-12-02T{h}:00+00:00"}
           for v, s, h in [("v1", 0.40, "09:10"), ("v2", 0.45, "10:05"), ("v1", 0.42, "12:30"), ("v2", 0.47, "15:45")]]
    fig = figure_history(day)
    FigureCanvasAgg(fig).draw()
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert len(ticks) >= 3 and all(re.fullmatch(r"\d\d:\d\d", t) for t in ticks), ticks
    assert fig.axes[0].xaxis.get_major_formatter().get_offset() == "2026-Dec-02"   # the day, once


def test_the_page_says_what_the_verdict_says_and_marks_its_pick(tmp_path):
    """With a paired comparison the page repeats the verdict word for word and marks the version it names;
    it no longer names a "cheapest within <n> of the best" of its own."""
    report = with_intervals(sample_report(5))
    rows = compare_table([report, {"version": "v1", "reference": "ground_truth", "score": 0.44, "n_tasks": 5,
                                   "cost": {"usd_per_task": 0.00001, "projected_usd": 0.006}}])
    verdict = f"v1 is not worse than v2 by more than {MARGIN:g} (diff -0.010 [-0.015, -0.005], 5 shared tasks)"
    compare = {"margin": MARGIN, "level": 0.95, "verdict": verdict, "non_inferior": "v1", "versions": [],
               "pairs": [{"a": report["version"], "b": "v1", "n_shared": 5, "diff": -0.01, "diff_ci": [-0.015, -0.005],
                          "p_value": 0.03, "p_adjusted": 0.03, "significant": True}]}
    page = open(render_html(dict(report, compare=compare), str(tmp_path / "r.html"),
                            ReportOptions(comparison=rows)), encoding="utf-8").read()
    assert f"<p><b>Verdict:</b> {verdict}</p>" in page
    assert "<td>v1 <span class=\"muted\">(the verdict's pick)</span></td>" in page
    assert page.count("the verdict's pick") == 1 and "Cheapest version" not in page
