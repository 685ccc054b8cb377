"""Cost section and quality-vs-cost comparison (pure functions, hand-worked numbers)."""
import pytest

from core.errors import ScoringError
from scoring.cost import cheapest_good_enough, compare_table, cost_section


def summary(**over):
    base = {
        "calls": 110, "tasks": 100, "input_tokens": 50_000, "output_tokens": 4_000,
        "usd": 0.25, "usd_complete": True, "errors": {"timeout": 10},
        "latency_p50": 0.8, "latency_p95": 2.5,
    }
    base.update(over)
    return base


def test_cost_section_hand_worked():
    s = cost_section(summary(), n_scored=80, n_project_tasks=2_000)
    assert s["usd"] == pytest.approx(0.25)
    assert s["usd_per_task"] == pytest.approx(0.0025)          # 0.25 / 100 tasks in the ledger
    assert s["projected_usd"] == pytest.approx(5.0)            # 0.0025 * 2000
    assert s["input_tokens"] == 50_000 and s["output_tokens"] == 4_000
    assert s["input_tokens_per_task"] == pytest.approx(500.0)
    assert s["output_tokens_per_task"] == pytest.approx(40.0)
    assert s["calls"] == 110 and s["tasks"] == 100 and s["n_scored"] == 80
    assert s["errors"] == {"timeout": 10}
    assert s["error_rate"] == pytest.approx(10 / 110)
    assert s["latency"] == {"p50": 0.8, "p95": 2.5}
    assert s["complete"] is True
    assert s["notes"] == []


def test_unknown_price_is_none_never_invented():
    s = cost_section(summary(usd=0.1, usd_complete=False), n_scored=100, n_project_tasks=1000)
    assert s["usd"] is None and s["usd_per_task"] is None and s["projected_usd"] is None
    assert s["usd_partial"] == pytest.approx(0.1)
    assert s["complete"] is False
    assert any("no known price" in n for n in s["notes"])
    # tokens are still reported
    assert s["input_tokens"] == 50_000


def test_no_ledger_and_empty_ledger():
    s = cost_section(None, n_scored=10, n_project_tasks=100)
    assert s["usd"] is None and s["projected_usd"] is None and s["complete"] is False
    assert s["notes"] and "no usage ledger" in s["notes"][0]
    e = cost_section(summary(calls=0, tasks=0, input_tokens=0, output_tokens=0, usd=0.0, errors={}), 10, 100)
    assert e["usd"] is None and e["usd_per_task"] is None and e["complete"] is False
    assert e["error_rate"] is None and e["input_tokens_per_task"] is None
    assert any("no usage for this version" in n for n in e["notes"])


def test_partial_ledger_coverage_is_noted():
    s = cost_section(summary(tasks=50), n_scored=100, n_project_tasks=100)
    assert s["usd_per_task"] == pytest.approx(0.005)
    assert any("usage for 50 tasks but 100 were scored" in n for n in s["notes"])


def report(version, score, usd_per_task, reference="ground_truth"):
    return {"version": version, "reference": reference, "score": score, "n_tasks": 100,
            "cost": {"usd_per_task": usd_per_task,
                     "projected_usd": None if usd_per_task is None else usd_per_task * 1000}}


def test_compare_table_similar_accuracy_third_of_price():
    rows = compare_table([report("cheap", 0.88, 0.001), report("big", 0.90, 0.003), report("bad", 0.70, 0.0005)])
    assert [r["version"] for r in rows] == ["big", "cheap", "bad"]
    big, cheap, bad = rows
    assert big["best"] and not cheap["best"]
    assert big["relative_cost"] == pytest.approx(1.0)
    assert cheap["relative_cost"] == pytest.approx(1 / 3)
    assert cheap["score_delta"] == pytest.approx(-0.02)
    assert bad["projected_usd"] == pytest.approx(0.5)
    assert cheapest_good_enough(rows)["version"] == "cheap"
    assert cheapest_good_enough(rows, tolerance=0.0)["version"] == "big"
    assert cheapest_good_enough(rows, tolerance=0.5)["version"] == "bad"


def test_compare_table_unknown_price_and_mixed_references():
    rows = compare_table([report("a", 0.9, None), report("b", 0.8, 0.002)])
    assert rows[0]["relative_cost"] is None and rows[1]["relative_cost"] is None
    assert cheapest_good_enough(rows, tolerance=0.02) is None     # the best has no price, b is too far
    assert cheapest_good_enough(rows, tolerance=0.2)["version"] == "b"
    with pytest.raises(ScoringError, match="different references"):
        compare_table([report("a", 0.9, 0.1), report("b", 0.8, 0.1, reference="a")])
    assert compare_table([]) == []
    assert cheapest_good_enough([]) is None


def test_cheapest_ties_go_to_higher_score():
    rows = [{"version": "x", "score": 0.9, "usd_per_task": 0.001},
            {"version": "y", "score": 0.91, "usd_per_task": 0.001}]
    assert cheapest_good_enough(rows)["version"] == "y"


def test_compare_table_lines_show_intervals_pairs_and_the_verdict():
    from scoring.commands.compare import table_lines

    rows = compare_table([
        {"version": "big", "reference": "ground_truth", "score": 0.90, "n_tasks": 10,
         "cost": {"usd_per_task": 0.003}},
        {"version": "small", "reference": "ground_truth", "score": 0.875, "n_tasks": 10,
         "cost": {"usd_per_task": 0.001}},
    ])
    verdict = "small is not worse than big by more than 0.03 (diff -0.025 [-0.029, -0.021], 10 shared tasks)"
    result = {"project": 1, "reference": "ground_truth", "reports": [{}, {}], "table": rows, "alpha": {},
              "level": 0.95, "versions": [{"version": "big", "score_ci": [0.8, 0.95]},
                                          {"version": "small", "score_ci": None}],
              "pairs": [{"a": "big", "b": "small", "n_shared": 10, "diff": -0.025, "diff_ci": [-0.029, -0.021],
                         "p_value": 0.002, "p_adjusted": 0.002, "significant": True}],
              "verdict": verdict}
    lines = table_lines(result)
    assert any(line.split()[:4] == ["big", "0.900", "[0.800,", "0.950]"] for line in lines)
    assert any(line.split()[:3] == ["small", "0.875", "[–]"] and "$0.0010" in line for line in lines)
    assert "    diff small − big: -0.025 [-0.029, -0.021] on 10 shared task(s), p = 0.002  significant" in lines
    assert f"  verdict: {verdict}" in lines


def paired(diff, lo, hi, n=400):
    from scoring.stats import PairedDiff

    return PairedDiff(n, diff, (lo, hi), 0.5, 0.1)


def test_cheapest_non_inferior_uses_the_interval_not_the_point():
    from scoring.cost import cheapest_non_inferior

    rows = [{"version": "best", "usd_per_task": 0.01}, {"version": "a", "usd_per_task": 0.001},
            {"version": "b", "usd_per_task": 0.002}, {"version": "dear", "usd_per_task": 0.02},
            {"version": "unpriced", "usd_per_task": None}]
    diffs = {"a": paired(-0.001, -0.04, 0.038),        # closest point estimate, but the data cannot rule out -0.04
             "b": paired(-0.015, -0.019, -0.011),      # surely within 0.02
             "dear": paired(0.0, -0.001, 0.001), "unpriced": paired(0.0, -0.001, 0.001)}
    pick, order = cheapest_non_inferior(rows, "best", diffs, 0.02)
    assert (pick, order) == ("b", ["a", "b", "unpriced"])           # dearer than the best: not a candidate
    assert cheapest_non_inferior(rows, "best", diffs, 0.01)[0] == "unpriced"
    from scoring.stats import PairedDiff

    assert cheapest_non_inferior(rows, "best", {"a": PairedDiff(0, None, None, None)}, 0.02) == (None, ["a"])


# --- issue 8 finding 19: what the backend dropped or guessed shows in the report -----------------------

def test_dropped_and_repaired_totals_are_reported_with_a_note():
    s = cost_section(summary(dropped={"spans": 3, "labels": 1, "boxes": 0}, repaired=2,
                             errors={"all_dropped": 1}), n_scored=80, n_project_tasks=2_000)
    assert s["dropped"] == {"spans": 3, "labels": 1} and s["repaired"] == 2
    assert s["errors"] == {"all_dropped": 1}
    assert s["notes"] == ["the backend dropped 4 answer regions (spans: 3, labels: 1) and repaired 2 answers "
                          "(e.g. a taxonomy path guessed from its last name); the backend log and the ledger notes "
                          "say which"]
    clean = cost_section(summary(), n_scored=80, n_project_tasks=2_000)  # a ledger without these totals
    assert clean["dropped"] == {} and clean["repaired"] == 0 and clean["notes"] == []


def test_ledger_totals_reach_the_json_and_html_reports(tmp_path):
    from backend.ledger import SQLiteLedger, UsageRecord
    from scoring.report_html import build_html

    led = SQLiteLedger(str(tmp_path / "ledger.sqlite3"))
    recs = [UsageRecord(version="v1", task_id=i, project="7", provider="openai", model="gpt-4o-mini", usd=0.001,
                        latency_s=0.5) for i in range(3)]
    recs[0].dropped, recs[1].repaired, recs[2].status = {"spans": 2}, 1, "all_dropped"
    recs[2].dropped = {"labels": 1}
    led.record_many(recs)
    section = cost_section(led.summary("v1", "7"), n_scored=3, n_project_tasks=10)
    led.close()
    assert section["dropped"] == {"labels": 1, "spans": 2} and section["repaired"] == 1
    page = build_html({"version": "v1", "reference": "ground_truth", "score": 0.5, "n_tasks": 3, "cost": section})
    assert "answer regions dropped / answers repaired</td><td" in page and "labels: 1, spans: 2 / 1</td>" in page
    assert "all_dropped: 1" in page
    old = build_html({"version": "v1", "reference": "ground_truth", "score": 0.5, "n_tasks": 3,
                      "cost": {k: v for k, v in section.items() if k not in ("dropped", "repaired")}})
    assert "not recorded" in old  # a report made before these totals existed does not claim 0
