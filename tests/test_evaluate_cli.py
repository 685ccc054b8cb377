"""``python -m scoring evaluate`` through a subprocess: a good run, and every bad input
ends with one ``error:`` line, exit status 2 and no traceback."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable

CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices>
  <TextArea name="summary" toName="text"/>
</View>"""


def agreement(annotation_1, annotation_2, per_label=False):
    """Custom metric used through scoring.yaml: 1 when both sides have the same number of texts."""
    def count(ann):
        return sum(len(r["value"]["text"]) for r in ann["result"])

    return 1.0 if count(annotation_1) == count(annotation_2) else 0.0


def ch(v):
    return {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [v]}}


def ta(t):
    return {"from_name": "summary", "to_name": "text", "type": "textarea", "value": {"text": [t]}}


def make_tasks():
    return [
        {"id": 1, "data": {"text": "a"},
         "annotations": [{"id": 1, "ground_truth": True, "result": [ch("Positive"), ta("abcd")]}],
         "predictions": [{"id": 1, "model_version": "v1", "result": [ch("Positive"), ta("abcf")]},
                         {"id": 2, "model_version": "v2", "result": [ch("Negative"), ta("abcd")]}]},
        {"id": 2, "data": {"text": "b"}, "annotations": [{"id": 2, "ground_truth": True, "result": [ch("Negative")]}],
         "predictions": [{"id": 3, "model_version": "v1", "result": [ch("Negative")]},
                         {"id": 4, "model_version": "v2", "result": [ch("Negative")]}]},
        {"id": 3, "data": {"text": "c"}, "annotations": [],
         "predictions": [{"id": 5, "model_version": "v1", "result": [ch("Positive")]}]},
    ]


@pytest.fixture
def files(tmp_path):
    export = tmp_path / "export.json"
    export.write_text(json.dumps(make_tasks()))
    config = tmp_path / "config.xml"
    config.write_text(CONFIG)
    return {"export": str(export), "config": str(config), "out": str(tmp_path / "out" / "report.json"), "dir": tmp_path}


def run(*args):
    return subprocess.run([PYTHON, "-m", "scoring", "evaluate", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def base(files, **over):
    args = {"--export": files["export"], "--label-config": files["config"], "--version": "v1", "--json": files["out"]}
    args.update(over)
    out = []
    for k, v in args.items():
        if v is not None:
            out += [k, v]
    return out


def test_good_run_writes_json_and_html(files):
    html = str(files["dir"] / "out" / "report.html")
    p = run(*base(files), "--html", html)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == (f"v1 vs ground_truth: score 0.938 [0.875, 1.000] over 2 task(s), 1 skipped "
                                f"-> {files['out']}")
    report = json.loads(Path(files["out"]).read_text())
    # task 1: sentiment 1, summary 1 - 1/4 = 0.75 -> 0.875; task 2: 1 -> mean 0.9375
    assert report["score"] == 0.9375 and report["n_tasks"] == 3 and report["n_skipped"] == 1
    summary = {k: v for k, v in report["per_control"]["summary"].items() if k != "ci"}
    assert summary == {"metric": "levenshtein", "score": 0.875, "n": 2, "weight": 1.0}
    assert report["skipped"] == [{"id": 3, "code": "no_reference", "reason": "no ground truth"}]
    assert report["confusion"]["sentiment"] == {"labels": ["Positive", "Negative"], "matrix": [[1, 0], [0, 1]]}
    assert report["kappa"]["sentiment"] == 1.0 and report["alpha"]["sentiment"] == 1.0
    page = Path(html).read_text()
    assert page.startswith("<!doctype html>") or page.lower().startswith("<!doctype html>")
    assert "v1" in page


def test_against_another_version_with_custom_metric(files):
    cfg = files["dir"] / "scoring.yaml"
    cfg.write_text("controls:\n  summary: {metric: 'tests.test_evaluate_cli:agreement', weight: 1}\n")
    p = run(*base(files, **{"--against": "v2", "--config": str(cfg)}))
    assert p.returncode == 0, p.stderr
    report = json.loads(Path(files["out"]).read_text())
    assert report["reference"] == "v2"
    # task 1: sentiment 0, summary 1 (one text each) -> 0.5; task 2: 1; task 3 has no v2 prediction
    assert [t["score"] for t in report["tasks"]] == [0.5, 1.0]
    assert report["per_control"]["summary"]["metric"] == "tests.test_evaluate_cli:agreement"
    assert report["skipped"] == [{"id": 3, "code": "no_reference", "reason": "no prediction of version 'v2'"}]


def test_some_mismatching_results_fail_but_keep_the_report(files):
    tasks = make_tasks()
    tasks[1]["predictions"][0]["result"] = [{"from_name": "mood", "to_name": "text", "value": {}}]
    Path(files["export"]).write_text(json.dumps(tasks))
    p = run(*base(files))
    assert p.returncode == 1
    assert p.stderr.strip() == (f"error: 1 task(s) skipped because their result does not match the label config; "
                                f"reasons under \"skipped\" in {files['out']}")
    assert "Traceback" not in p.stderr
    assert json.loads(Path(files["out"]).read_text())["n_compared"] == 1
    p = run(*base(files), "--allow-mismatch")
    assert p.returncode == 0
    assert p.stderr.startswith("warning: 1 task(s) skipped because their result does not match the label config")


def bad(files, content=None, config_text=None, **over):
    if content is not None:
        Path(files["export"]).write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    if config_text is not None:
        Path(files["config"]).write_text(config_text)
    return run(*base(files, **over))


def no_gt():
    tasks = make_tasks()
    for t in tasks:
        t["annotations"] = []
    return tasks


def all_mismatch():
    tasks = make_tasks()
    for t in tasks:
        for p in t["predictions"]:
            p["result"] = [{"from_name": "mood", "value": {"choices": ["x"]}}]
    return tasks


def ids_only():
    tasks = make_tasks()
    for t in tasks:
        t["predictions"] = [p["id"] for p in t["predictions"]]
    return tasks


CASES = {
    "not json": (dict(content=b"<html>"), "is not JSON"),
    "not an export": (dict(content={"title": "project"}), "not a Label Studio JSON export"),
    "json-min export": (dict(content=[{"id": 1, "text": "a", "sentiment": "Positive"}]), "JSON_MIN"),
    "ids-only predictions": (dict(content=ids_only()), "predictions as ids only"),
    "missing export": (dict(**{"--export": "/nonexistent/export.json"}), "cannot read export file"),
    "unknown version": (dict(**{"--version": "v9"}), "version 'v9' has no predictions"),
    "unknown reference version": (dict(**{"--against": "v7"}), "reference version 'v7'"),
    "no ground truth": (dict(content=no_gt()), "no task has a ground-truth annotation"),
    "result does not match config": (dict(content=all_mismatch()), "no task could be scored"),
    "label config not xml": (dict(config_text="<View><Choices"), "label config cannot be parsed"),
    "label config empty": (dict(config_text="  "), "is empty"),
    "label config missing": (dict(**{"--label-config": "/nonexistent/config.xml"}), "cannot read label config"),
    # issue 8 finding 10: these printed a RecursionError traceback and exited 1
    "nested too deeply": (dict(content=b"[" * 100_000 + b"]" * 100_000), "is nested too deeply to read"),
    "task data nested too deeply": (dict(content=json.dumps(make_tasks()).replace(
        '{"text": "a"}', '{"text": "a", "deep": ' + "[" * 3000 + "]" * 3000 + "}").encode()), "nested too deeply"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_one_line_error(files, case):
    kwargs, message = CASES[case]
    p = bad(files, **kwargs)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], p.stderr
    assert not Path(files["out"]).exists()


@pytest.mark.parametrize("yaml_text,message", [
    ("controls: {sentiment: {metric: levenshtein}}\n", "metric 'levenshtein' is not one of exact, jaccard"),
    ("controls: {mood: exact}\n", "control 'mood' is not in the label config"),
    ("controls: {summary: 'no_such_mod_abc:f'}\n", "cannot import custom metric module"),
    ("controls: [\n", "is not valid YAML"),
])
def test_bad_scoring_config_gives_one_line_error(files, yaml_text, message):
    cfg = files["dir"] / "scoring.yaml"
    cfg.write_text(yaml_text)
    p = run(*base(files, **{"--config": str(cfg)}))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], p.stderr


def test_unwritable_output_gives_one_line_error(files):
    blocker = files["dir"] / "file"
    blocker.write_text("x")
    p = run(*base(files, **{"--json": str(blocker / "report.json")}))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().startswith("error: cannot write") and len(p.stderr.strip().splitlines()) == 1


def test_console_script_entry_point(files):
    """``scoring.cli:main`` as an installed console script: pip's wrapper calls ``sys.exit(main())``."""
    script = files["dir"] / "llm-prelabel-score"
    script.write_text("import re, sys\nfrom scoring.cli import main\nif __name__ == '__main__':\n"
                      "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n    sys.exit(main())\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    call = [PYTHON, str(script)]
    p = subprocess.run(call + ["evaluate", *base(files)], cwd=files["dir"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("v1 vs ground_truth: score 0.938") and json.loads(Path(files["out"]).read_text())
    p = subprocess.run(call + ["--help"], cwd=files["dir"], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.startswith("usage: llm-prelabel-score ")
    p = subprocess.run(call + ["evaluate", *base(files, **{"--version": "v9"})], cwd=files["dir"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.startswith("error: ") and "Traceback" not in p.stderr
    p = subprocess.run([PYTHON, "-m", "scoring", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.stdout.startswith("usage: python -m scoring ")


def test_intervals_level_and_the_project_wide_estimate(files):
    p = run(*base(files), "--level", "0.9", "--proxy", "v2")
    assert p.returncode == 0, p.stderr
    report = json.loads(Path(files["out"]).read_text())
    assert report["ci_level"] == 0.9 and report["score_ci"] == [0.875, 1.0]
    assert report["per_control"]["sentiment"]["ci"] is not None          # Wilson for 2 of 2 exact matches
    assert set(report["kappa_ci"]) == {"sentiment"} and set(report["alpha_ci"]) == {"sentiment"}
    ppi = report["ppi"]
    assert set(ppi) >= {"score", "ci", "classical_ci", "n_labeled", "n_unlabeled"}
    # v2 predicted tasks 1 and 2 only, both with ground truth: 2 labeled, nothing to extrapolate to
    assert (ppi["proxy"], ppi["n_labeled"], ppi["n_unlabeled"]) == ("v2", 2, 0)
    assert ppi["score"] == pytest.approx(report["score"])
    assert "project-wide estimate with proxy v2: 0.938" in p.stdout


@pytest.mark.parametrize("extra, message", [
    (["--proxy", "v2", "--against", "v2"], "--proxy estimates the score against ground truth"),
    (["--proxy", "v1"], "--proxy names the scored version 'v1' itself"),
    (["--level", "1.5"], "confidence level must be a number between 0 and 1"),
])
def test_bad_proxy_or_level(files, extra, message):
    p = run(*base(files), *extra)
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr


# --------------------------------------------------------------------------- output paths (issue 8 finding 10)
def one_error_line(p) -> str:
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    return lines[0]


def output_cases(d: Path) -> dict:
    """name -> (--json, --html, expected message); ``d/afile`` is a file, ``d/adir`` a directory."""
    return {
        "html under a file": (d / "r.json", d / "afile" / "r.html",
                              f"cannot write --html {d / 'afile' / 'r.html'}: {d / 'afile'} is not a directory"),
        "json under a file, deeper": (d / "afile" / "x" / "r.json", d / "r.html", f"{d / 'afile'} is not a directory"),
        "json is a directory": (d / "adir", d / "r.html", f"cannot write --json {d / 'adir'}: it is a directory"),
        "html ends with a slash": (d / "r.json", f"{d / 'new'}/", "it is a directory"),
        "the same file twice": (d / "r.json", d / "." / "r.json", "--json and --html name the same file"),
    }


@pytest.mark.parametrize("case", list(output_cases(Path("/d"))))
def test_every_output_path_is_checked_before_anything_is_written(files, case):
    d = files["dir"]
    (d / "afile").write_text("x")
    (d / "adir").mkdir()
    json_out, html_out, message = output_cases(d)[case]
    p = run(*base(files, **{"--json": str(json_out), "--html": str(html_out)}))
    line = one_error_line(p)
    assert message in line, line
    assert sorted(x.name for x in d.iterdir()) == ["adir", "afile", "config.xml", "export.json"]  # nothing new
    assert list((d / "adir").iterdir()) == []


def test_missing_output_parents_are_created(files):
    d = files["dir"]
    json_out, html_out = d / "a" / "b" / "r.json", d / "c" / "r.html"
    p = run(*base(files, **{"--json": str(json_out), "--html": str(html_out)}))
    assert p.returncode == 0, p.stderr
    assert json.loads(json_out.read_text())["version"] == "v1" and html_out.read_text().startswith("<!doctype html>")


@pytest.mark.parametrize("command", [["score", "--project", "1", "--version", "v1", "--write-back"],
                                     ["compare", "--project", "1", "--versions", "v1", "v2"]])
def test_score_and_compare_check_their_outputs_before_asking_label_studio(files, command):
    """Label Studio at a closed port: had the command asked it anything, the error would be about that."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    d = files["dir"]
    (d / "afile").write_text("x")
    env = {**os.environ, "LABEL_STUDIO_URL": f"http://127.0.0.1:{closed}", "LABEL_STUDIO_API_KEY": "secret-key-123",
           "DATA_DIR": str(d / "var")}
    env.pop("REDIS_URL", None)
    html = d / "afile" / "r.html"
    p = subprocess.run([PYTHON, "-m", "scoring", *command, "--json", str(d / "r.json"), "--html", str(html)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert one_error_line(p) == (f"error: cannot write --html {html}: {d / 'afile'} is not a directory; "
                                 "nothing was written")
    assert not (d / "r.json").exists() and not (d / "var").exists()   # no lock file, no history either
