"""``python -m scoring <command>``: one module per command, listed in COMMANDS.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args, settings) -> int``.  Adding a command = one module + one line here.
Errors of this project (``core.errors.Error``) are printed as one line and
exit with status 2; nothing else is caught.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from core.errors import Error
from core.secrets import install_log_filter
from core.settings import Settings

COMMANDS = {
    "evaluate": "scoring.commands.evaluate",   # offline: score an export file
    "score": "scoring.commands.score",         # pull a project from Label Studio, score, write back
    "compare": "scoring.commands.compare",     # several versions side by side: quality and cost
    "history": "scoring.commands.history",     # past scoring runs of a project
    "suggest": "scoring.commands.suggest",     # which tasks to annotate next: a Data Manager tab
    "run": "scoring.commands.run",             # run a version on a project's tasks (in-process): plan, write
    "runs": "scoring.commands.runs",           # list the runs of a project: status, progress, cost, failures
    "worker": "scoring.commands.worker",       # run the RQ worker (with its cron schedule)
    "calibrate": "scoring.commands.calibrate", # fit confidence -> P(right) on ground truth; store it for the backend
    "accept": "scoring.commands.accept",       # accept confident predictions at a target accuracy (and --undo)
    "activate": "scoring.commands.activate",   # which evaluation the Data Manager's scores show (or --backend)
}


def build_parser() -> argparse.ArgumentParser:
    # "python -m scoring" when run as a module, else the console script's own name
    prog = "python -m scoring" if os.path.basename(sys.argv[0]) in ("__main__.py", "-c", "") else None
    parser = argparse.ArgumentParser(prog=prog, description="Score LLM prompt versions against "
                                     "Label Studio ground truth or each other.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_path in COMMANDS.items():
        try:
            module = importlib.import_module(module_path)
        except ModuleNotFoundError as exc:
            if exc.name == module_path:
                continue  # command not installed in this build
            raise
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (``argv`` defaults to ``sys.argv[1:]``).

    Usable as a console-script entry point (``scoring = "scoring.cli:main"``): the
    installer's wrapper calls ``sys.exit(main())``.
    """
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
        install_log_filter(settings)
        return int(args._module.run(args, settings) or 0)
    except Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
