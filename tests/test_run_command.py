"""``python -m scoring run`` (in-process) against a real Label Studio 1.23.2 and the stand-in LLM."""
from __future__ import annotations

import json
import random

import pytest
import yaml

from backend.ledger import open_ledger
from core.errors import ScoringError
from core.labelstudio import LabelStudioClient
from fakellm.dataset import LABEL_CONFIG, make_tasks
from scoring.cli import build_parser, main
from scoring.commands.run import confirm
from scoring.runs import Runner, RunOptions, read_ids, select_tasks

ls = pytest.mark.labelstudio  # the tests that start a real Label Studio
V = "run-v1"
N_TASKS, N_GT = 10, 4


@pytest.fixture
def settings(label_studio, fake_llm, tmp_path):
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text(yaml.safe_dump({"versions": [
        {"id": V, "provider": "openai", "model": "gpt-4o-mini",
         "instruction": "Label this review.\n<text>{text}</text>"}]}))
    return label_studio.settings(prompts_file=str(prompts), openai_api_key="test-key",
                                 openai_base_url=fake_llm.openai_base_url, provider_max_retries=0,
                                 data_dir=str(tmp_path / "var"))


@pytest.fixture
def project(label_studio) -> tuple[int, list[int]]:
    """A project of 10 review tasks; the first 4 carry a ground-truth annotation."""
    tasks = make_tasks(N_TASKS)
    payload = [{"data": t["data"], **({"annotations": t["annotations"]} if i < N_GT else {})}
               for i, t in enumerate(tasks)]
    pid = label_studio.create_project(LABEL_CONFIG, title="scoring run")
    label_studio.sdk().projects.import_tasks(id=pid, request=payload, commit_to_project=True)
    ids = sorted(t.id for t in label_studio.sdk().tasks.list(project=pid))
    return pid, ids


def run(settings, tmp_path, pid, *argv) -> dict:
    out = tmp_path / "run.json"
    args = build_parser().parse_args(["run", "--project", str(pid), "--version", V, "--no-progress",
                                      "--json", str(out), *argv])
    assert args._module.run(args, settings) == 0
    return json.loads(out.read_text())


def calls(fake_llm) -> int:
    return sum(1 for e in fake_llm.requests if e["path"].endswith("/chat/completions"))


def versions_per_task(settings, pid) -> dict[int, list[str]]:
    tasks, _ = LabelStudioClient(settings).pull_project(pid, progress=False)
    return {t["id"]: sorted(p["model_version"] for p in t["predictions"]) for t in tasks}


@ls
def test_missing_predicts_every_task_once_and_a_rerun_nothing(settings, project, fake_llm, tmp_path, capsys):
    pid, ids = project
    first = run(settings, tmp_path, pid, "--yes")
    assert (first["tasks_selected"], first["predicted"], first["skipped_existing"]) == (N_TASKS, N_TASKS, 0)
    assert (first["provider_calls"], first["cached"], first["failed"]) == (N_TASKS, 0, {})
    assert calls(fake_llm) == N_TASKS  # the 5 sample calls of the estimate are part of the 10, not extra
    assert set(first) >= {"run_id", "project", "version", "usd", "estimate"} and first["version"] == V
    est = first["estimate"]
    print(f"\nestimate vs actual (sample-calibrated): ${est['usd']:.6f} vs ${first['usd']:.6f}; "
          f"tokens {est['input_tokens']}/{est['output_tokens']} vs {first['input_tokens']}/{first['output_tokens']}")
    assert first["usd"] > 0 and abs(first["usd"] - est["usd"]) / est["usd"] < 0.2
    assert versions_per_task(settings, pid) == {i: [V] for i in ids}
    printed = capsys.readouterr().out
    assert "provider calls:          10 (5 made already for the estimate)" in printed
    assert "estimated cost" in printed and "actual" in printed

    again = run(settings, tmp_path, pid, "--yes")
    assert (again["tasks_selected"], again["predicted"], again["provider_calls"], again["usd"]) == (0, 0, 0, 0.0)
    assert calls(fake_llm) == N_TASKS
    assert versions_per_task(settings, pid) == {i: [V] for i in ids}


@ls
def test_each_tasks_choice(settings, project, fake_llm, tmp_path):
    pid, ids = project
    gt = run(settings, tmp_path, pid, "--yes", "--tasks", "ground-truth")
    assert (gt["tasks_selected"], gt["predicted"]) == (N_GT, N_GT)
    assert [t for t, vs in versions_per_task(settings, pid).items() if vs] == ids[:N_GT]

    sample = run(settings, tmp_path, pid, "--yes", "--tasks", "sample:5", "--seed", "3")
    expected = sorted(random.Random(3).sample(ids, 5))  # the documented seeded draw
    overlap = len(set(expected) & set(ids[:N_GT]))
    assert (sample["tasks_selected"], sample["skipped_existing"], sample["predicted"]) == (5, overlap, 5 - overlap)
    have = {t for t, vs in versions_per_task(settings, pid).items() if vs}
    assert have == set(ids[:N_GT]) | set(expected)

    missing = sorted(set(ids) - have)
    listed = tmp_path / "ids.txt"
    listed.write_text(f"# two tasks and one that is not in the project\n{missing[0]}\n{missing[1]}\n999999\n")
    by_ids = run(settings, tmp_path, pid, "--yes", "--tasks", f"ids:{listed}")
    assert (by_ids["tasks_selected"], by_ids["predicted"], by_ids["failed"]) == (2, 2, {"not_in_project": 1})

    everything = run(settings, tmp_path, pid, "--yes", "--tasks", "all")
    done_before = len(have) + 2
    assert (everything["tasks_selected"], everything["skipped_existing"]) == (N_TASKS, done_before)
    assert everything["predicted"] == N_TASKS - done_before
    assert versions_per_task(settings, pid) == {i: [V] for i in ids}
    assert calls(fake_llm) == N_TASKS  # every task was asked exactly once over the five runs


@ls
def test_missing_tells_versions_apart_exactly(settings, project, tmp_path):
    """The plan lists the tasks through the Data Manager, which joins a task's prediction versions
    with commas: ``run-v10`` is not ``run-v1``; a version id with a comma is told apart by the export."""
    pid, ids = project
    odd = "run,v1"
    prompts = tmp_path / "two.yaml"
    prompts.write_text(yaml.safe_dump({"versions": [
        {"id": i, "provider": "openai", "model": "gpt-4o-mini", "instruction": "Label.\n<text>{text}</text>"}
        for i in (V, odd)]}))
    s = settings.replace(prompts_file=str(prompts))
    result = [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}}]
    LabelStudioClient(s).import_predictions(pid, [
        {"task": ids[0], "model_version": V, "result": result},
        {"task": ids[1], "model_version": "run-v10", "result": result},
        {"task": ids[2], "model_version": odd, "result": result},
        {"task": ids[3], "model_version": "run", "result": result},
        {"task": ids[3], "model_version": "v1", "result": result}])

    def todo(version: str) -> list[int]:
        plan = Runner(s, RunOptions(project=pid, version=version, progress=False, estimate_sample=0)).plan()
        return sorted(t["id"] for t in plan.todo)
    assert todo(V) == [i for i in ids if i != ids[0]]
    assert todo(odd) == [i for i in ids if i != ids[2]]   # task 4's "run" and "v1" are two other versions


@ls
def test_estimate_writes_nothing_and_calls_only_the_stated_sample(settings, project, fake_llm, tmp_path, capsys):
    pid, ids = project
    blind = run(settings, tmp_path, pid, "--estimate", "--estimate-sample", "0")
    assert calls(fake_llm) == 0 and blind["estimate"]["usd"] is None and blind["provider_calls"] == 0
    assert "output: unknown" in capsys.readouterr().out

    est = run(settings, tmp_path, pid, "--estimate", "--estimate-sample", "3")
    assert calls(fake_llm) == 3 and est["provider_calls"] == 3 and est["predicted"] == 0
    assert "sample: 3 real call(s) made now for this estimate" in capsys.readouterr().out
    assert versions_per_task(settings, pid) == {i: [] for i in ids}

    again = run(settings, tmp_path, pid, "--estimate")  # the ledger now knows the version: no sample
    assert calls(fake_llm) == 3 and again["provider_calls"] == 0
    printed = capsys.readouterr().out
    assert "earlier successful call(s) of run-v1 in the usage ledger" in printed
    assert "answered by the cache:   3 task(s)" in printed and "provider calls:          7" in printed

    done = run(settings, tmp_path, pid, "--yes")  # the sample's answers come from the cache
    assert (done["predicted"], done["cached"], done["provider_calls"]) == (N_TASKS, 3, N_TASKS - 3)
    assert calls(fake_llm) == N_TASKS
    est, actual = done["estimate"]["usd"], done["usd"]
    print(f"\nestimate vs actual (ledger-calibrated): ${est:.6f} vs ${actual:.6f}")
    assert abs(actual - est) / est < 0.2


@ls
def test_a_version_known_from_another_project_is_calibrated_on_a_sample(label_studio, settings, project, fake_llm,
                                                                         tmp_path, capsys):
    run(settings, tmp_path, project[0], "--yes")  # the ledger now has 10 calls of V, on another project
    pid = label_studio.create_project(LABEL_CONFIG, title="scoring run, second project")
    label_studio.sdk().projects.import_tasks(id=pid, request=[{"data": t["data"]} for t in make_tasks(6, seed=11)])
    capsys.readouterr()
    second = run(settings, tmp_path, pid, "--yes", "--estimate-sample", "2")
    printed = capsys.readouterr().out
    assert "sample: 2 real call(s) made now" in printed and "in the usage ledger" in printed
    assert (second["predicted"], second["provider_calls"], calls(fake_llm)) == (6, 6, N_TASKS + 6)
    est, actual = second["estimate"]["usd"], second["usd"]
    print(f"\nestimate vs actual (output from the ledger, input from a sample): ${est:.6f} vs ${actual:.6f}")
    assert abs(actual - est) / est < 0.2


@ls
def test_budget_and_confirmation_refusals(settings, project, fake_llm, tmp_path, monkeypatch, capsys):
    pid, ids = project
    for name, value in {"LABEL_STUDIO_URL": settings.label_studio_url, "LABEL_STUDIO_API_KEY":
                        settings.label_studio_api_key, "PROMPTS_FILE": settings.prompts_file, "OPENAI_API_KEY": "k",
                        "OPENAI_BASE_URL": settings.openai_base_url, "DATA_DIR": settings.data_dir,
                        "PROVIDER_MAX_RETRIES": "0", "REDIS_URL": ""}.items():
        monkeypatch.setenv(name, value)
    code = main(["run", "--project", str(pid), "--version", V, "--budget", "0.000001", "--yes", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is over --budget" in err[0] and err[0].startswith("error: ")
    assert calls(fake_llm) == 5  # only the estimate's stated sample
    assert versions_per_task(settings, pid) == {i: [] for i in ids}
    # stdin is not a terminal under pytest: without --yes the run refuses
    with pytest.raises(ScoringError, match="stdin is not a terminal: pass --yes"):
        run(settings, tmp_path, pid, "--budget", "100")
    assert versions_per_task(settings, pid) == {i: [] for i in ids}
    assert calls(fake_llm) == 5  # the ledger knew the version: no new sample


@ls
def test_cache_answers_a_run_after_the_predictions_were_deleted(settings, project, fake_llm, tmp_path):
    pid, ids = project
    client = LabelStudioClient(settings)
    first = run(settings, tmp_path, pid, "--yes")
    assert first["provider_calls"] == N_TASKS
    assert client.delete_model_version(pid, V) == N_TASKS
    second = run(settings, tmp_path, pid, "--yes")
    assert (second["predicted"], second["cached"], second["provider_calls"], second["usd"]) == (N_TASKS, N_TASKS, 0, 0)
    assert second["estimate"]["usd"] == 0 and calls(fake_llm) == N_TASKS
    assert versions_per_task(settings, pid) == {i: [V] for i in ids}
    records = open_ledger(settings).records(V, str(pid))
    cached = [r for r in records if r.cached]
    assert len(cached) == N_TASKS and all(r.usd == 0 and r.saved_usd and r.saved_usd > 0 for r in cached)

    client.delete_model_version(pid, V)
    third = run(settings, tmp_path, pid, "--yes", "--no-cache")
    assert (third["predicted"], third["cached"], third["provider_calls"]) == (N_TASKS, 0, N_TASKS)
    assert calls(fake_llm) == 2 * N_TASKS


@ls
def test_a_task_predicted_meanwhile_by_another_run_is_skipped(settings, project, fake_llm):
    pid, ids = project
    runner = Runner(settings, RunOptions(project=pid, version=V, progress=False))
    plan = runner.plan()
    assert len(plan.todo) == N_TASKS
    # another run writes a prediction of V for the third task between the plan and the write
    LabelStudioClient(settings).import_predictions(pid, [{"task": ids[2], "model_version": V, "result": []}])
    totals = runner.execute(plan)
    assert (totals["predicted"], totals["skipped_existing"]) == (N_TASKS - 1, 1)
    assert versions_per_task(settings, pid) == {i: [V] for i in ids}


class _Terminal:
    def __init__(self, answer: str):
        self.answer = answer

    def isatty(self) -> bool:
        return True

    def readline(self) -> str:
        return self.answer


def test_confirmation_reads_the_terminal(capsys):
    confirm("go?", yes=False, stdin=_Terminal("y\n"))
    with pytest.raises(ScoringError, match="not confirmed"):
        confirm("go?", yes=False, stdin=_Terminal("\n"))
    confirm("go?", yes=True, stdin=None)
    assert capsys.readouterr().out.count("go?") == 2


def test_task_selection_and_id_files(tmp_path):
    tasks = [{"id": i, "annotations": [{"ground_truth": i % 2 == 0}], "predictions": []} for i in (5, 3, 9, 8)]
    assert [t["id"] for t in select_tasks(tasks, "ground-truth", V)[0]] == [8]
    assert [t["id"] for t in select_tasks(tasks, "all", V)[0]] == [3, 5, 8, 9]
    assert select_tasks(tasks, "sample:10", V)[0] == select_tasks(tasks, "all", V)[0]
    (tmp_path / "a.json").write_text("[9, 3, 4]")
    chosen, not_found = select_tasks(tasks, f"ids:{tmp_path / 'a.json'}", V)
    assert ([t["id"] for t in chosen], not_found) == ([3, 9], 1)
    (tmp_path / "b.txt").write_text("7\nseven\n")
    with pytest.raises(ScoringError, match="whole number"):
        read_ids(str(tmp_path / "b.txt"))
    for bad in ("sample:x", "some", "ids:"):
        with pytest.raises(ScoringError, match="is not one of missing, all, ground-truth"):
            select_tasks(tasks, bad, V)
