"""``make demo`` / ``python -m demo``: the whole loop in a real Label Studio, on this machine.

1. starts Label Studio 1.23.2 headless on 127.0.0.1 (SQLite, a fixed admin and API token; its data
   under ``var/demo/label-studio``, reused on the next run, ``--fresh`` starts over);
2. creates a project from the shipped review dataset (``--tasks``, default 200), ``--ground-truth``
   of them (default 60) imported with their annotation, which Label Studio marks as ground truth;
3. starts the ML backend on 127.0.0.1 and connects it as the project's model;
4. without ``OPENAI_API_KEY``/``ANTHROPIC_API_KEY``: starts the stand-in LLM (an offline
   simulation: no real model is called); with a key: uses the real models, and prints each run's
   plan and estimated cost and asks before spending (``--yes`` skips the questions);
5. predicts every task with two prompt versions through the run command's in-process runner
   (``python -m scoring run``; the RQ worker is not needed), scores both against the ground truth
   and against each other, writes the agreement back into Label Studio, and prints quality and
   cost side by side, then where to look in Label Studio;
6. stays up until Ctrl-C (``--no-wait``: exits at once), then stops every process it started.

``python -m demo --offline`` runs the older loop without Label Studio (the backend driven over HTTP).
"""
from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from pathlib import Path

from core.errors import Error
from core.settings import Settings
from demo.lsserver import find_binary
from demo.project import ProjectSpec, connect_backend, find_or_create
from demo.stack import ADMIN, DemoVersion, Stack, pick_versions, write_prompts

DEMO_DIRS = ("label-studio", "simulated", "real")  # under --data-dir: Label Studio's data, each mode's ledger/cache


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n\n")[0],
                                 epilog="python -m demo --offline [--tasks N]: the loop without Label Studio")
    ap.add_argument("--tasks", type=int, default=200, help="reviews in the demo project (default 200)")
    ap.add_argument("--ground-truth", type=int, default=60,
                    help="of them imported with a ground-truth annotation (default 60, at most half the tasks)")
    ap.add_argument("--data-dir", default="var/demo", help="Label Studio's data and the demo's (default var/demo)")
    ap.add_argument("--fresh", action="store_true", help="delete --data-dir first: a new Label Studio and project")
    ap.add_argument("--port", type=int, default=8080, help="Label Studio's port (default 8080; 0 or taken: a free one)")
    ap.add_argument("--backend-port", type=int, default=9090,
                    help="the ML backend's port (default 9090; 0 or taken: a free one)")
    ap.add_argument("--yes", action="store_true", help="with real models: do not ask before spending")
    ap.add_argument("--no-wait", action="store_true", help="stop everything and exit when done (for CI)")
    args = ap.parse_args(argv)
    if args.tasks < 2 or args.ground_truth < 1:
        ap.error("--tasks must be at least 2 and --ground-truth at least 1")
    args.ground_truth = min(args.ground_truth, args.tasks // 2)
    return args


def say(text: str = "") -> None:
    print(text, flush=True)


def llm_mode(base: Settings, args) -> tuple[bool, list[DemoVersion]]:
    """(simulated?, versions): the stand-in LLM without provider keys, else the real models after a yes."""
    from scoring.commands.run import confirm

    simulated = not (base.openai_api_key or base.anthropic_api_key)
    versions = pick_versions(simulated, bool(base.openai_api_key), bool(base.anthropic_api_key))
    if simulated:
        say("No OPENAI_API_KEY or ANTHROPIC_API_KEY: OFFLINE SIMULATION. The stand-in LLM (fakellm) answers from the "
            "dataset's labels, worsened per model; no real model is called and nothing costs money.")
    else:
        names = ", ".join(f"{v.id} ({v.provider} {v.model})" for v in versions)
        say(f"Provider key set: the demo calls REAL models and spends money: {names}.")
        say("Before each version's run its plan and estimated cost are printed (measuring tokens may take up to 5 "
            "real calls per version first); you confirm each run.")
        confirm("Go on? [y/N]", args.yes)
    if base.redis_url:
        say("REDIS_URL is set: a deployment would run these jobs on the RQ worker (python -m scoring worker); "
            "the demo stays self-contained and does the work in this process, with its ledger under --data-dir.")
    return simulated, versions


def start(stack: Stack, base: Settings, args, simulated: bool,
          versions: list[DemoVersion]) -> tuple[Settings, int, str]:
    """Label Studio, the project, the stand-in LLM (simulation) and the backend; (settings, project, title)."""
    data = Path(args.data_dir)
    t = time.perf_counter()
    fresh = not (data / "label-studio" / "label_studio.sqlite3").exists()
    ls = stack.start_label_studio(data / "label-studio", args.port, find_binary())
    say(f"Label Studio 1.23.2 at {ls.url} (pid {ls.proc.pid if ls.proc else '?'}; data in {ls.data_dir}, "
        f"{'new' if fresh else 'reused'}): up in {time.perf_counter() - t:.1f} s")
    sdk = ls.sdk()
    mode = "offline simulation" if simulated else "real models"
    spec = ProjectSpec(f"Demo reviews ({mode})", args.tasks, args.ground_truth)
    pid, created = find_or_create(sdk, spec)
    n_tasks = sdk.projects.get(id=pid).task_number or 0
    say(f"project {pid} \"{spec.title}\": " + (f"created, {n_tasks} reviews, {spec.ground_truth} with ground truth"
                                            if created else f"reused ({n_tasks} reviews; --fresh starts over)"))
    work = data / DEMO_DIRS[1 if simulated else 2]
    write_prompts(work / "prompts.yaml", versions)
    settings = base.replace(
        prompts_file=str(work / "prompts.yaml"), data_dir=str(work), redis_url=None, default_version=versions[0].id,
        label_studio_url=ls.url, label_studio_api_key=ls.token)
    if simulated:
        from fakellm.dataset import make_tasks

        fake = stack.start_fake_llm(make_tasks(max(n_tasks, args.tasks)))
        settings = settings.replace(openai_api_key="demo-key-not-secret", openai_base_url=fake.openai_base_url,
                                    anthropic_api_key="demo-key-not-secret", anthropic_base_url=fake.anthropic_base_url,
                                    predict_concurrency=8)
        say(f"stand-in LLM (offline simulation) at {fake.url}: its calls and tokens are simulated, priced at the "
            "real models' prices (what such calls would cost)")
    backend = stack.start_backend(settings, args.backend_port)
    title = connect_backend(sdk, pid, backend, versions[0].id)
    say(f"ML backend at {backend}, connected to project {pid} as \"{title}\"")
    return settings, pid, title


def predict(settings: Settings, pid: int, versions: list[DemoVersion], yes: bool) -> None:
    """Every task of the project predicted by each version (tasks that have one are skipped)."""
    from scoring.commands.run import run_version
    from scoring.runs import RunOptions

    for v in versions:
        t = time.perf_counter()
        say()
        run_version(settings, RunOptions(project=pid, version=v.id, progress=sys.stderr.isatty()), yes=yes)
        say(f"  ({time.perf_counter() - t:.1f} s)")


def score(settings: Settings, pid: int, versions: list[DemoVersion]) -> tuple[str, str]:
    """Compare both versions against the ground truth, write every evaluation back; (best, other)."""
    from scoring.commands.compare import table_lines
    from scoring.pipeline import CompareOptions, ScoreOptions, compare_versions, score_project

    t = time.perf_counter()
    options = CompareOptions(progress=False, record=False)
    result = compare_versions(settings, pid, [v.id for v in versions], options)
    say()
    say("\n".join(table_lines(result)))  # scores with their intervals, paired differences, the verdict
    first = result["reports"][0]
    say(f"  (quality: on the {first['n_compared']} of {first['n_project_tasks']} tasks that have a ground-truth "
        "annotation)")
    best = result["table"][0]["version"]
    other = next(v.id for v in versions if v.id != best)
    for v in versions:
        score_project(settings, pid, v.id, ScoreOptions(write_back=True, make_current=v.id == best, progress=False))
    mvm = score_project(settings, pid, other, ScoreOptions(against=best, write_back=True, progress=False))
    kappa = (mvm.get("kappa") or {}).get("sentiment")
    say(f"\nWithout ground truth: {other} agrees with {best} at {mvm['score']:.3f} on {mvm['n_compared']} tasks"
        + (f" (Cohen's kappa on sentiment {kappa:.3f})" if kappa is not None else ""))
    say(f"Scored and written back to Label Studio in {time.perf_counter() - t:.1f} s")
    return best, other


def where_to_look(stack: Stack, pid: int, title: str, best: str, other: str) -> None:
    ls = stack.label_studio
    say(f"\nLabel Studio: {ls.url}/projects/{pid}/data")
    say(f"  log in as {ADMIN.username} / {ADMIN.password}   (API token {ADMIN.token})")
    from scoring.evaltabs import tab_title

    say(f"  open the Data Manager tab \"{tab_title(best, 'ground_truth')}\": the active evaluation, lowest "
        "agreement first, with its Prediction score column")
    say(f"  the other evaluations' tabs, \"{tab_title(other, 'ground_truth', active=False)}\" and "
        f"\"{tab_title(other, best, active=False)}\", show their tasks without scores until you make one active: "
        f"llm-prelabel activate --project {pid} --version {other}   (back to the backend: --backend)")
    say(f"  the model connection: {ls.url}/projects/{pid}/settings/model (\"{title}\")")


def wait_for_ctrl_c(stack: Stack) -> None:
    say("\nRunning until Ctrl-C (then Label Studio, the backend and the stand-in LLM are stopped).")
    proc = stack.label_studio.proc
    try:
        while proc is not None and proc.poll() is None:
            time.sleep(1)
        say(f"Label Studio exited; log: {stack.label_studio.log_path}")
    except KeyboardInterrupt:
        say("")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("werkzeug", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    t0 = time.perf_counter()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill PID` stops as cleanly as Ctrl-C
    try:
        base = Settings.from_env()
        simulated, versions = llm_mode(base, args)
        if args.fresh:  # only what the demo made there (--data-dir may hold other things)
            for sub in DEMO_DIRS:
                shutil.rmtree(Path(args.data_dir) / sub, ignore_errors=True)
        with Stack() as stack:
            settings, pid, title = start(stack, base, args, simulated, versions)
            predict(settings, pid, versions, yes=simulated or args.yes)
            best, other = score(settings, pid, versions)
            where_to_look(stack, pid, title, best, other)
            say(f"\nDone in {time.perf_counter() - t0:.1f} s.")
            if not args.no_wait:
                wait_for_ctrl_c(stack)
        say("Stopped every process the demo started.")
    except (Error, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if "ensure_label_studio" in str(exc) or "LS_BIN" in str(exc):
            print("(the loop without Label Studio: python -m demo --offline)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; stopped every process the demo started", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
