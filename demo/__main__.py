"""``make demo`` / ``python -m demo``: the whole loop, offline, in about ten seconds.

1. starts the stand-in LLM server (``fakellm``, a test double: no real
   model is called) answering from the dataset's ground truth, worsened per model
   at fixed rates, so the "cheaper" models really are measurably worse;
2. starts the ML backend (``backend.app``) on 127.0.0.1 and drives it over HTTP
   the way Label Studio does: ``/health``, ``/setup`` with the project's
   version in ``extra_params``, then one batch ``/predict`` per version
   (through the real ``openai`` and ``anthropic`` SDKs);
3. scores every version against the ground truth, and the cheapest against
   the best one without ground truth (model vs model);
4. prints quality and cost side by side and writes ``out/demo/report.html``
   (plots) and one JSON report per version.

Nothing leaves the machine.  Use ``--tasks N`` for a bigger run.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import threading
import time

import httpx
import yaml
from werkzeug.serving import BaseWSGIServer, make_server

from backend.app import create_app
from backend.ledger import open_ledger
from backend.schema import plan_for
from backend.versions import load_versions
from core.settings import Settings
from fakellm import FakeLLM, TableAnswer
from fakellm.dataset import LABEL_CONFIG, make_tasks
from fakellm.oracle import answer_from_regions
from scoring.compare import PairOptions, paired_comparison
from scoring.cost import compare_table, cost_section
from scoring.engine import evaluate
from scoring.report_html import ReportOptions, render_html

INSTRUCTION = "You label customer reviews for a shop. Read the review and fill in every field.\n<text>{text}</text>\n"
VERSIONS = [
    # id, provider, model (the stand-in's error rate per model is set below)
    ("reviews-gpt-4o-v1", "openai", "gpt-4o"),
    ("reviews-gpt-4o-mini-v1", "openai", "gpt-4o-mini"),
    ("reviews-claude-haiku-v1", "anthropic", "claude-haiku-4-5"),
]
ERROR_RATES = {"gpt-4o": 0.05, "gpt-4o-mini": 0.12, "claude-haiku-4-5": 0.30}


def _serve(app) -> tuple[str, BaseWSGIServer]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _money(x) -> str:
    return "unknown" if x is None else f"${x:,.4f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=60, help="number of review tasks (default 60)")
    ap.add_argument("--project-size", type=int, default=10_000,
                    help="tasks in the imagined full project, for the cost projection")
    ap.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    t0 = time.perf_counter()
    if os.path.isdir(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out)

    tasks = make_tasks(args.tasks)
    plan = plan_for(LABEL_CONFIG)
    table = {t["data"]["text"]: answer_from_regions(t["annotations"][0]["result"], plan, t["data"]["text"])
             for t in tasks}

    with FakeLLM(TableAnswer(table, error_rates=ERROR_RATES, seed=1)) as fake:
        prompts = os.path.join(args.out, "prompts.yaml")
        with open(prompts, "w") as fh:
            yaml.safe_dump(
                {"default": VERSIONS[0][0], "versions": [
                    {"id": vid, "provider": prov, "model": model, "instruction": INSTRUCTION,
                     "params": {"max_tokens": 1024} if prov == "anthropic" else {"temperature": 0, "max_tokens": 1024}}
                    for vid, prov, model in VERSIONS]},
                fh, sort_keys=False,
            )
        settings = Settings(
            prompts_file=prompts,
            openai_api_key="demo-key-not-secret", openai_base_url=fake.openai_base_url,
            anthropic_api_key="demo-key-not-secret", anthropic_base_url=fake.anthropic_base_url,
            data_dir=os.path.join(args.out, "var"), predict_concurrency=8,
        )
        versions = load_versions(settings.prompts_file)
        ledger = open_ledger(settings)
        url, server = _serve(create_app(settings, versions, ledger=ledger))
        print(f"stand-in LLM at {fake.url}; ML backend at {url}")
        with httpx.Client(base_url=url, timeout=120) as http:
            assert http.get("/health").json()["status"] == "UP"
            for vid, _, model in VERSIONS:
                setup = http.post("/setup", json={"project": "1.1700000000", "schema": LABEL_CONFIG,
                                                  "extra_params": {"version": vid}}).json()
                t = time.perf_counter()
                reply = http.post("/predict", json={"tasks": tasks, "project": "1.1700000000",
                                                    "label_config": LABEL_CONFIG}).json()
                results = reply["results"]
                assert len(results) == len(tasks)
                for task, res in zip(tasks, results, strict=True):
                    if isinstance(res, dict):
                        task.setdefault("predictions", []).append(dict(res, model_version=setup["model_version"]))
                print(f"  predicted {len(tasks)} tasks with {vid} ({model}) in {time.perf_counter() - t:.2f} s")
        server.shutdown()

    export_path = os.path.join(args.out, "export.json")
    with open(export_path, "w") as fh:
        json.dump(tasks, fh)

    reports = []
    for vid, _, _ in VERSIONS:
        report = evaluate(tasks, LABEL_CONFIG, vid)
        report["cost"] = cost_section(ledger.summary(vid, "1"), report["n_tasks"], args.project_size)
        reports.append(report)
        with open(os.path.join(args.out, f"{vid}.json"), "w") as fh:
            json.dump(report, fh, indent=2)
    rows = compare_table(reports)
    best = next(r for r in reports if r["version"] == rows[0]["version"])
    paired = paired_comparison(reports, {r["version"]: r["usd_per_task"] for r in rows}, PairOptions(margin=0.03))
    cheap = rows[-1]["version"]
    mvm = evaluate(tasks, LABEL_CONFIG, cheap, against=rows[0]["version"])
    render_html({**best, "compare": paired}, os.path.join(args.out, "report.html"),
                ReportOptions(comparison=rows, tolerance=0.03, model_vs_model=mvm))

    print(f"\nQuality against ground truth ({len(tasks)} tasks) and cost (projected to {args.project_size:,} tasks):")
    lines = [["version", "score", *best["per_control"], "usd/task", "projected", "relative cost"]]
    for row in rows:
        rep = next(r for r in reports if r["version"] == row["version"])
        lines.append([
            row["version"], f"{row['score']:.3f}",
            *[f"{rep['per_control'][c]['score']:.3f}" for c in best["per_control"]],
            _money(row["usd_per_task"]), _money(row["projected_usd"]),
            "-" if row["relative_cost"] is None else f"{row['relative_cost']:.2f}x",
        ])
    print(_table(lines))
    print(f"\nVerdict: {paired['verdict']}")

    worst = sorted(mvm["tasks"], key=lambda t: t["score"])[:3]
    print(f"\nWithout ground truth: {cheap} agrees with {rows[0]['version']} at {mvm['score']:.3f}"
          f" (Cohen's kappa on sentiment {mvm['kappa'].get('sentiment', float('nan')):.3f});"
          f" most disagreeing tasks: {', '.join(str(t['id']) for t in worst)}")
    with open(os.path.join(args.out, "model_vs_model.json"), "w") as fh:
        json.dump(mvm, fh, indent=2)
    print(f"\nReport with plots: {os.path.join(args.out, 'report.html')}   (JSON reports and export.json beside it)")
    print(f"Done in {time.perf_counter() - t0:.1f} s.")
    return 0


def dispatch(argv: list[str] | None = None) -> int:
    """``python -m demo --offline``: the loop above; otherwise the live demo in a real Label Studio (demo/live.py)."""
    argv = sys.argv[1:] if argv is None else argv
    if "--offline" in argv:
        return main([a for a in argv if a != "--offline"])
    from demo.live import main as live

    return live(argv)


if __name__ == "__main__":
    sys.exit(dispatch())
