"""``python -m scoring activate``: choose which evaluation the Data Manager's scores show, or go back.

    python -m scoring activate --project 7 --version v2                  # eval(v2 vs ground_truth)
    python -m scoring activate --project 7 --version v2 --against v1     # eval(v2 vs v1)
    python -m scoring activate --project 7 --evaluation "eval(v2 vs ground_truth)"
    python -m scoring activate --project 7 --backend                     # the way back, when the review is done
    python -m scoring activate --project 7                               # list the evaluations, change nothing

Label Studio 1.23.2 shows one set of prediction scores at a time (the project's current model
version).  Activating an evaluation makes it current, titles its tab "★ v2 vs GT" (lowest
agreement first) and every other evaluation tab "☆ … (inactive)" without scores; ``--backend``
puts back the model version that was current before any evaluation (the ML backend's, which then
pre-labels tasks again) and leaves every evaluation tab inactive.  See ``scoring.evaltabs``.
"""
from __future__ import annotations

from core.errors import ScoringError
from core.labelstudio import LabelStudioClient
from scoring.engine import GROUND_TRUTH
from scoring.evaltabs import activate, evaluation_name, evaluation_tabs, parse_evaluation, remembered_backend

HELP = "make an evaluation the one whose agreement scores the Data Manager shows (or --backend: go back)"


def add_arguments(parser) -> None:
    parser.add_argument("--project", required=True, type=int, help="Label Studio project id")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--version", help="the scored version of the evaluation (with --against)")
    which.add_argument("--evaluation", metavar='"eval(V vs REF)"', help="the evaluation's model version")
    which.add_argument("--backend", action="store_true",
                       help="go back to the model version current before any evaluation (the ML backend's)")
    parser.add_argument("--against", default=GROUND_TRUTH, help="with --version: the reference (default ground_truth)")


def chosen(args) -> str | None:
    """The evaluation name the arguments ask for (None for --backend or a plain listing)."""
    if args.version:
        return evaluation_name(args.version, args.against)
    if args.evaluation:
        if parse_evaluation(args.evaluation) is None:
            raise ScoringError(f"'{args.evaluation}' is not an evaluation name: they look like "
                               "\"eval(v2 vs ground_truth)\" (or use --version V [--against REF])")
        return str(args.evaluation)
    return None


def run(args, settings) -> int:
    client = LabelStudioClient(settings)
    pid = int(args.project)
    counts = client.model_version_counts(pid)
    evaluations = sorted(name for name in counts if parse_evaluation(name))
    name = chosen(args)
    if name is None and not args.backend:
        return _list(client, pid, counts, evaluations)
    if name is not None and name not in counts:
        raise ScoringError(f"project {pid} has no evaluation '{name}' (it has: {', '.join(evaluations) or 'none'}); "
                           "write one with: python -m scoring score --write-back")
    if args.backend and remembered_backend(client.views(pid)) is None and parse_evaluation(
            client.project(pid)["model_version"]):
        raise ScoringError("the model version current before the evaluations is not known (they were made current "
                           "by an earlier release): pick the ML backend's in Settings → Annotation → Prelabeling")
    done = activate(client, pid, name)
    print(f"project {pid}: current model version {done['current']!r} (was {done['previous']!r})")
    for tab in done["tabs"].values():
        print(f"  tab {tab['title']!r}" + ("  <- lowest agreement first, scores shown" if tab["active"] else ""))
    if name is not None:
        print(f"  the way back: python -m scoring activate --project {pid} --backend "
              f"(model version {done['backend_model_version'] or '(none)'!r})")
    return 0


def _list(client: LabelStudioClient, pid: int, counts: dict, evaluations: list[str]) -> int:
    project = client.project(pid)
    views = client.views(pid)
    tabs = evaluation_tabs(views)
    print(f"project {pid}: current model version {project['model_version'] or None!r}; "
          f"before any evaluation: {remembered_backend(views)!r}")
    for name in evaluations:
        mark = "active" if name == project["model_version"] else "inactive"
        title = tabs[name]["title"] if name in tabs else "(no tab)"
        print(f"  {name}: {counts[name]} prediction(s), {mark}, tab {title!r}")
    if not evaluations:
        print("  no evaluations written back yet (python -m scoring score --write-back)")
    return 0
