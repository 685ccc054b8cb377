"""The compare table's "tasks" column counts the compared tasks, not all tasks the report looked at."""
from scoring.commands.compare import table_lines
from scoring.cost import compare_table


def _report(version: str, score: float) -> dict:
    return {"version": version, "reference": "ground_truth", "score": score, "n_tasks": 40, "n_compared": 25,
            "cost": {"usd_per_task": 0.001, "projected_usd": 0.04}}


def test_compare_rows_and_printout_show_compared_tasks():
    rows = compare_table([_report("v1", 0.9), _report("v2", 0.8)])
    assert [(r["n_tasks"], r["n_compared"]) for r in rows] == [(40, 25), (40, 25)]   # n_tasks kept as it was
    lines = table_lines({"project": 7, "reference": "ground_truth", "table": rows, "cheapest_good_enough": None})
    assert lines[2].split()[:6] == ["version", "score", "interval", "Δ", "best", "tasks"]
    for line in lines[3:5]:
        assert line.split()[4] == "25", line   # version, score, interval (- when none), Δ best, tasks
