"""``python -m scoring run``: run a prompt version on a Label Studio project, in this process.

    python -m scoring run --project 7 --version v2                      # tasks without a v2 prediction
    python -m scoring run --project 7 --version v2 --tasks ground-truth --estimate
    python -m scoring run --project 7 --version v2 --tasks sample:200 --budget 1.50 --yes --json out/run.json
    python -m scoring run --project 7 --version v2 --tasks ids:ids.txt --no-cache

Prints a plan first (tasks selected, how many the response cache answers, provider calls, estimated
tokens and USD and how they were estimated), asks to confirm (``--yes`` skips; without a terminal
and without ``--yes`` it refuses), then predicts and writes the predictions to Label Studio in chunks
and prints the estimate next to the actual cost.  The logic is :mod:`scoring.runs`.  Refusals
(``--budget`` exceeded, not confirmed) are one ``error: ...`` line and exit status 2.

Two modes.  With ``REDIS_URL`` (queue mode, :mod:`scoring.runqueue`) the run is split into chunk
jobs on the RQ queue, shared by every ``python -m scoring worker``; the command follows it with a
progress bar (Ctrl-C detaches: the run goes on; ``--detach`` returns at once).  Without Redis (or
with ``--in-process``) it runs in this process.  Either way the run is recorded:
``python -m scoring runs --project ID`` lists runs with status, progress, cost and failures.
"""
from __future__ import annotations

import sys
from collections import Counter

from backend.runwork import RUN_CHUNK, WRITE_BATCH
from core.errors import ScoringError
from core.settings import Settings
from scoring.output import check_outputs, write_json
from scoring.runs import Runner, RunOptions, RunPlan, new_totals, tally, usd_text

HELP = "run a prompt version on a Label Studio project's tasks (RQ workers, or in process): plan, confirm, write"


def add_arguments(parser) -> None:
    parser.epilog = ("With REDIS_URL the run is chunk jobs on the RQ queue (run `python -m scoring worker`, any "
                     "number of them); Ctrl-C detaches. Without it (or --in-process) it runs in this process. "
                     "`python -m scoring runs --project ID` lists runs.")
    parser.add_argument("--project", required=True, type=int, help="Label Studio project id")
    parser.add_argument("--version", required=True, help="prompt version id (from PROMPTS_FILE)")
    parser.add_argument("--tasks", default="missing", metavar="missing|all|ground-truth|sample:N|ids:FILE",
                        help="which tasks: without a prediction of the version (default), all, those with a "
                             "ground-truth annotation, a seeded random sample of N (see --seed), or the ids listed in "
                             "FILE (one per line or a JSON list); tasks that already have a prediction of the version "
                             "are always skipped")
    parser.add_argument("--seed", type=int, default=0, help="seed of sample:N and of the estimate's sample (default 0)")
    parser.add_argument("--estimate", action="store_true",
                        help="print the plan and stop: nothing is written (only the --estimate-sample calls, if any, "
                             "are made)")
    parser.add_argument("--estimate-sample", type=int, default=5, metavar="K",
                        help="when the usage ledger has no earlier call of the version, make K real calls to measure "
                             "tokens (default 5; their cost is printed and counted; 0 = none, output cost unknown)")
    parser.add_argument("--budget", type=float, metavar="USD", help="refuse (exit 2) when the estimate is over USD")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--no-cache", action="store_true",
                        help="neither answer from nor store in the response cache (every task calls the provider)")
    parser.add_argument("--chunk", type=int, default=RUN_CHUNK, metavar="N",
                        help=f"tasks per chunk: one queue job each, predictions written to Label Studio every "
                             f"{WRITE_BATCH} while it predicts (default {RUN_CHUNK})")
    parser.add_argument("--json", dest="json_out", metavar="OUT.json", help="write the run's counts as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress output")
    parser.add_argument("--detach", action="store_true",
                        help="queue mode: return as soon as the chunk jobs are queued (follow with `runs`)")
    parser.add_argument("--in-process", action="store_true",
                        help="run in this process even with REDIS_URL (no workers needed)")


def run(args, settings: Settings) -> int:
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request is noise here
    if args.budget is not None and args.budget < 0:
        raise ScoringError("--budget must be 0 or more (USD)")
    check_outputs({"--json": args.json_out})  # before anything is spent
    options = RunOptions(project=args.project, version=args.version, tasks=args.tasks, seed=args.seed,
                         use_cache=not args.no_cache, estimate_sample=max(0, args.estimate_sample),
                         chunk=max(1, args.chunk), progress=not args.no_progress,
                         queued=bool(settings.redis_url) and not args.in_process, detach=args.detach)
    result = run_version(settings, options, estimate_only=args.estimate, budget=args.budget, yes=args.yes)
    if args.json_out:
        write_json(args.json_out, result)
    return 0


def plan_lines(runner: Runner, plan: RunPlan) -> list[str]:
    """The plan as printed before anything is spent."""
    v, o, e = runner.version, runner.options, plan.estimate
    cache = ("off (--no-cache)" if not o.use_cache else "off for this version (cache: false)" if not v.cache
             else "off (RESPONSE_CACHE=off)" if runner.predictor.cache is None else f"{len(plan.cached)} task(s)")
    lines = [f"run {runner.run_id}: version {v.id} ({v.provider} {v.model}) on project {o.project}, --tasks {o.tasks}",
             f"  tasks selected:          {plan.selected}"
             + (f" ({plan.not_found} listed id(s) not in the project)" if plan.not_found else ""),
             f"  already predicted:       {plan.skipped_existing} (skipped)",
             f"  answered by the cache:   {cache}",
             f"  provider calls:          {plan.calls}" + (f" ({len(plan.sample)} made already for the estimate)"
                                                         if plan.sample else "")]
    if plan.unrenderable:
        lines.append(f"  cannot be prompted:      {len(plan.unrenderable)} (no call; "
                     f"{', '.join(f'{k}: {n}' for k, n in Counter(plan.unrenderable.values()).items())})")
    out = "unknown" if e.output_tokens is None else f"{e.output_tokens:,}"
    lines += [f"  estimated tokens:        {e.input_tokens:,} input, {out} output",
              f"  estimated cost:          {usd_text(e.usd)}", "  how:"]
    lines += [f"    - {h}" for h in e.how]
    return lines


def summary_lines(result: dict) -> list[str]:
    """The closing summary, with the estimate next to what was spent."""
    e = result["estimate"]
    failed = ", ".join(f"{k}: {n}" for k, n in result["failed"].items()) or "none"
    lines = [f"run {result['run_id']}: {result['predicted']} prediction(s) of {result['version']} written to project "
             f"{result['project']}; {result['skipped_existing']} task(s) already had one; failed: {failed}",
             f"  {result['cached']} answered by the cache, {result['provider_calls']} provider call(s)",
             f"  tokens: estimated {e['input_tokens']:,} input / "
             f"{'unknown' if e['output_tokens'] is None else format(e['output_tokens'], ',')} output, "
             f"actual {result['input_tokens']:,} / {result['output_tokens']:,}"]
    line = f"  cost:   estimated {usd_text(e['usd'])}, actual {usd_text(result['usd'])}"
    if e["usd"] and result["usd"] is not None:
        line += f" ({(result['usd'] - e['usd']) / e['usd']:+.0%})"
    return [*lines, line]


def confirm(question: str, yes: bool, stdin=None) -> None:
    """Go on when ``yes`` or the person answers y; raise ScoringError otherwise (and without a terminal)."""
    stdin = stdin or sys.stdin
    if yes:
        return
    if not stdin.isatty():
        raise ScoringError("the run needs confirmation and stdin is not a terminal: pass --yes to run it "
                           "(or --estimate to only see the plan)")
    print(question, end=" ", flush=True)
    if stdin.readline().strip().lower() not in {"y", "yes"}:
        raise ScoringError("not confirmed; nothing was written")


def run_version(settings: Settings, options: RunOptions, *, estimate_only: bool = False, budget: float | None = None,
                yes: bool = False, stdin=None) -> dict:
    """Plan, check the budget, confirm, run; prints the plan and the summary; returns the ``--json`` document."""
    runner = Runner(settings, options)
    plan = runner.plan()
    print("\n".join(plan_lines(runner, plan)), flush=True)
    usd = plan.estimate.usd
    if budget is not None and (usd is None or usd > budget):
        why = "cannot be estimated" if usd is None else f"{usd_text(usd)} is over --budget {usd_text(budget)}"
        raise ScoringError(f"the run's estimated cost {why}; nothing was written")
    if estimate_only:
        totals = new_totals(plan)
        tally(plan.sample, totals)
        print("--estimate: nothing was written to Label Studio", flush=True)
        return runner.result(plan, totals)
    if plan.calls > len(plan.sample):
        confirm(f"make {plan.calls - len(plan.sample)} provider call(s), about {usd_text(usd)}? [y/N]", yes, stdin)

    def progress(totals: dict) -> None:
        if options.progress:
            done = totals["predicted"] + sum(totals["failed"].values()) + totals["skipped_existing"]
            print(f"  {done}/{plan.selected} task(s) done, {totals['provider_calls']} call(s)", file=sys.stderr)

    if options.queued:
        from scoring.runqueue import run_queued

        result = run_queued(runner, plan, detach=options.detach)
        if result["status"] == "finished":
            print("\n".join(summary_lines(result)), flush=True)
        return result
    try:
        result = runner.result(plan, runner.execute(plan, on_chunk=progress))
    except KeyboardInterrupt:
        written = (runner.totals or {}).get("predicted", 0)
        print(f"interrupted: {written} prediction(s) were written; run the same command again to do the rest "
              "(tasks that have a prediction of the version are skipped)", file=sys.stderr)
        raise SystemExit(130) from None
    print("\n".join(summary_lines(result)), flush=True)
    return result
