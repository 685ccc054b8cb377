"""Recurring scoring with RQ 3's built-in cron (``rq.cron.CronScheduler``), configured in YAML.

``schedules.yaml`` (see ``schedules.example.yaml``)::

    schedules:
      - project: 12
        version: v2
        against: ground_truth     # or another version id (model vs model); default ground_truth
        cron: "0 * * * *"         # standard 5-field cron, in the worker host's local time
        write_back: true          # default true
      - project: 12
        version: v3
        interval: 3600            # or: every N seconds (first run at start-up)

Each entry becomes one cron job on the scoring queue that enqueues
``scoring.jobs.scheduled_score(project, version, against, write_back)``; that
job in turn enqueues the real ``score_job`` under its unique id, so a slow run
is never stacked up behind by its own schedule.  ``python -m scoring worker
--schedules schedules.yaml`` runs the cron scheduler next to the worker.
"""
from __future__ import annotations

from dataclasses import dataclass

import yaml
from rq.cron import CronScheduler

from core.errors import ScoringConfigError

KEYS = {"project", "version", "against", "cron", "interval", "write_back"}


@dataclass(frozen=True)
class Schedule:
    """One recurring scoring run: what to score and when (``cron`` or ``interval`` seconds, not both)."""

    project: str
    version: str
    against: str = "ground_truth"
    write_back: bool = True
    cron: str | None = None
    interval: int | None = None

    @property
    def name(self) -> str:
        """The cron job's name (shown by rq's monitoring), e.g. ``score 12 v2 vs ground_truth``."""
        return f"score {self.project} {self.version} vs {self.against}"


def parse_schedules(data, source: str = "schedules") -> list[Schedule]:
    """Validate the parsed YAML (``{"schedules": [...]}``) into :class:`Schedule` objects.

    Example::

        >>> parse_schedules({"schedules": [{"project": 3, "version": "v1", "interval": 60}]})
        [Schedule(project='3', version='v1', against='ground_truth', write_back=True, cron=None, interval=60)]
    """
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("schedules", []), list):
        raise ScoringConfigError(f"{source}: expected a mapping with a `schedules:` list")
    unknown_top = set(data) - {"schedules"}
    if unknown_top:
        raise ScoringConfigError(f"{source}: unknown key(s) {', '.join(sorted(map(str, unknown_top)))}; "
                                 "only `schedules:` is allowed")
    return [_parse_entry(entry, f"{source}: schedule #{i}")
            for i, entry in enumerate(data.get("schedules") or [], start=1)]


def _parse_entry(entry, where: str) -> Schedule:
    """One validated schedule entry; errors start with ``where``."""
    if not isinstance(entry, dict):
        raise ScoringConfigError(f"{where} must be a mapping with project, version and cron or interval")
    unknown = set(entry) - KEYS
    if unknown:
        raise ScoringConfigError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                                 f"allowed: {', '.join(sorted(KEYS))}")
    for key in ("project", "version"):
        if entry.get(key) in (None, ""):
            raise ScoringConfigError(f"{where}: `{key}` is required")
    cron, interval = _when(entry, where)
    write_back = entry.get("write_back", True)
    if not isinstance(write_back, bool):
        raise ScoringConfigError(f"{where}: `write_back` must be true or false")
    against = entry.get("against") or "ground_truth"
    return Schedule(project=str(entry["project"]), version=str(entry["version"]), against=str(against),
                    write_back=write_back, cron=cron, interval=interval)


def _when(entry: dict, where: str) -> tuple[str | None, int | None]:
    """The entry's ``(cron, interval)``: exactly one is set, and valid."""
    from croniter import croniter

    cron, interval = entry.get("cron"), entry.get("interval")
    if (cron is None) == (interval is None):
        raise ScoringConfigError(f"{where}: give exactly one of `cron` (e.g. \"0 * * * *\") or `interval` (seconds)")
    if cron is not None and (not isinstance(cron, str) or not croniter.is_valid(cron)):
        raise ScoringConfigError(f"{where}: `cron: {cron}` is not a valid cron expression "
                                 "(e.g. \"0 * * * *\" = hourly)")
    if interval is not None and (isinstance(interval, bool) or not isinstance(interval, int) or interval <= 0):
        raise ScoringConfigError(f"{where}: `interval` must be a whole number of seconds > 0, got {interval!r}")
    return cron, interval


def load_schedules(path: str) -> list[Schedule]:
    """Read and validate a schedules YAML file; errors name the file and the entry."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ScoringConfigError(f"schedules file {path} not found (copy schedules.example.yaml)") from None
    except OSError as exc:
        raise ScoringConfigError(f"cannot read schedules file {path}: {exc.strerror or exc} "
                                 "(it must be a YAML file)") from exc
    except yaml.YAMLError as exc:
        raise ScoringConfigError(f"schedules file {path} is not valid YAML: {exc}".splitlines()[0]) from exc
    return parse_schedules(data, source=path)


def register_schedules(scheduler, schedules: list[Schedule], queue_name: str) -> list:
    """Register each schedule on an ``rq.cron.CronScheduler``; returns the ``CronJob`` objects."""
    from scoring.jobs import RESCORE_TIMEOUT, scheduled_score

    jobs = []
    for s in schedules:
        jobs.append(scheduler.register(
            scheduled_score, queue_name, args=(s.project, s.version),
            kwargs={"against": s.against, "write_back": s.write_back},
            cron=s.cron, interval=s.interval, job_timeout=RESCORE_TIMEOUT, name=s.name,
        ))
    return jobs


class ScoringCron(CronScheduler):
    """RQ's cron scheduler, whose stop signal also ends a wait for Redis (``scoring.worker.RedisWait``)."""

    def _request_stop(self, signum, frame):
        from scoring.worker import stop_waiting

        stop_waiting(self.connection)
        super()._request_stop(signum, frame)


def build_cron(settings, path: str, connection=None):
    """A ``CronScheduler`` on ``connection`` (default ``REDIS_URL``) with the file's schedules
    on ``settings.queue_name``.

    With a connection that waits out Redis outages (``scoring.worker.waiting_connection``,
    what the worker's cron child uses), a stop signal also ends that waiting, so the
    scheduler can stop while Redis is unreachable.
    """
    if connection is None:
        from core.stores import redis_connection

        connection = redis_connection(settings, "scheduled scoring")
    scheduler = ScoringCron(connection=connection, logging_level=settings.log_level)
    scheduler.config_file = path
    register_schedules(scheduler, load_schedules(path), settings.queue_name)
    return scheduler
