"""``python -m scoring history --project ID [--version V] [--limit N] [--json]``

Lists a project's past scoring runs, newest first, with how each version's
score moved since its previous run (↑ better, ↓ worse, = unchanged), then one
line per version: first score → latest score over N runs.  Model-vs-model runs
form their own series ("v2 vs v1").  ``--json`` prints ``{"runs": [...],
"trend": {series: [[time, score], ...]}}`` instead.
"""
from __future__ import annotations

import json
from typing import Any

from core.fmt import num
from core.settings import Settings
from scoring.history import open_history, series_name, with_deltas

HELP = "list a project's past scoring runs and how each version's score moved"


def add_arguments(parser) -> None:
    parser.add_argument("--project", required=True, help="Label Studio project id")
    parser.add_argument("--version", default=None, help="only this prompt version")
    parser.add_argument("--limit", type=int, default=50, help="at most this many runs (default 50)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _arrow(delta: float | None) -> str:
    if delta is None:
        return ""
    if abs(delta) < 0.0005:
        return "= 0.000"
    return f"{'↑' if delta > 0 else '↓'} {delta:+.3f}"


HEADER = ("finished (UTC)", "version", "reference", "score", "change", "compared", "skipped", "USD/task", "run id")


def run(args, settings: Settings) -> int:
    """Print the run table (or JSON) for ``args.project``; returns 0."""
    store = open_history(settings)
    limit = max(args.limit, 1)
    # deltas need each series' previous run even beyond --limit, so read a little more
    runs = with_deltas(store.list(args.project, version=args.version, limit=limit + 200))[:limit]
    trend: dict[str, Any] = store.trend(args.project)
    if args.version is not None:
        trend = {k: v for k, v in trend.items() if k == args.version or k.startswith(f"{args.version} vs ")}
    if args.json:
        print(json.dumps({"project": str(args.project), "runs": runs, "trend": trend}, indent=2, default=str))
        return 0
    if not runs:
        print(f"no scoring runs recorded for project {args.project}"
              + (f" and version {args.version}" if args.version else "") + f" in {where(settings)}")
        return 0
    for line in [*table_lines(runs), "", "how each version moved:", *move_lines(runs, trend)]:
        print(line)
    return 0


def where(settings: Settings) -> str:
    """Where the history is kept, for messages (the Redis password masked).

    >>> where(Settings(redis_url="redis://:pw@cache:6379/0"))
    'the Redis history at redis://***@cache:6379/0 (REDIS_URL)'
    >>> where(Settings(redis_url=None, data_dir="/var/lib/x"))
    'the SQLite history /var/lib/x/history.sqlite3 (no REDIS_URL set; DATA_DIR=/var/lib/x)'
    """
    from core.spool import safe_url
    from core.stores import sqlite_path

    if settings.redis_url:
        return f"the Redis history at {safe_url(settings.redis_url)} (REDIS_URL)"
    path = sqlite_path(settings, "history.sqlite3")
    return f"the SQLite history {path} (no REDIS_URL set; DATA_DIR={settings.data_dir})"


def table_lines(runs: list[dict]) -> list[str]:
    """One line per run under a header, columns padded to their widest cell."""
    rows = []
    for r in runs:
        finished = str(r.get("finished_at", ""))[:16].replace("T", " ")
        cost = r.get("cost") or {}
        rows.append((
            finished, str(r.get("version")), str(r.get("reference")), num(r.get("score"), ".3f", "-"),
            _arrow(r.get("delta")), num(r.get("n_compared", r.get("n_tasks")), "d", "-"),
            num(r.get("n_skipped"), "d", "-"), num(cost.get("usd_per_task"), ".6f", "-"), str(r.get("run_id")),
        ))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(HEADER)]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [HEADER, *rows]]


def move_lines(runs: list[dict], trend: dict[str, Any]) -> list[str]:
    """Per series shown in ``runs``: first score → latest score over N runs."""
    shown = {series_name(r) for r in runs}
    lines = []
    for name, points in trend.items():
        scores = [s for _, s in points if isinstance(s, (int, float))]
        if name not in shown or not scores:
            continue
        first, last = scores[0], scores[-1]
        move = _arrow(last - first) if len(scores) > 1 else "first run"
        lines.append(f"  {name}: {first:.3f} → {last:.3f} over {len(points)} run{'s' if len(points) != 1 else ''} "
                     f"({move})")
    return lines
