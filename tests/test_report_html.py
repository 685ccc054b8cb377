"""The HTML report: self-contained, escaped, plots embedded, lowest-agreement tasks linked."""
import base64
import re

from core.labelstudio import label_studio_task_url
from scoring.cost import compare_table, cost_section
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
    """The sentence under the comparison table states the tolerance the pick was made with (was fixed at 0.02)."""
    report = sample_report(5)
    rows = compare_table([report, {"version": "v1", "reference": "ground_truth", "score": 0.42, "n_tasks": 5,
                                   "cost": {"usd_per_task": 0.00001, "projected_usd": 0.006}}])
    default = open(render_html(report, str(tmp_path / "a.html"), ReportOptions(comparison=rows)),
                   encoding="utf-8").read()
    assert "within 0.02 of the best score: <b>v2" in default        # v1 is 0.03 below the best: not good enough
    wider = open(render_html(report, str(tmp_path / "b.html"), ReportOptions(comparison=rows, tolerance=0.03)),
                 encoding="utf-8").read()
    assert "within 0.03 of the best score: <b>v1</b>" in wider
