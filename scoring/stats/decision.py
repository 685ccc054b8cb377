"""Is a cheaper version good enough?  Non-inferiority and a one-sentence verdict.

Convention: the diff is ``paired_diff(best, cheap)``, i.e. mean(cheap) - mean(best); a
negative diff means the cheap version scores lower.  "Not worse by more than ``margin``"
is shown when the interval's lower end is above ``-margin``; "worse by more than ``margin``"
when its upper end is below ``-margin``; otherwise the data cannot tell yet.

How many more shared ground-truth tasks would tell (``tasks_needed``): the interval's
half-width is about z * sd / sqrt(n) (sd = standard deviation of the per-task differences,
z the normal quantile of the level).  It stops containing ``-margin`` once the half-width is
below the distance |diff + margin|, so

    n_needed = ceil((z * sd / |diff + margin|) ** 2)

assuming the observed diff and sd stay as they are.  This is a rough guide, not a
guarantee: if the diff moves, so does the answer (it gives about even odds of a verdict;
for 80% odds multiply by ((z + 0.84) / z) ** 2, about 2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from scoring.stats._common import z_value
from scoring.stats.paired import PairedDiff


@dataclass(frozen=True)
class Arm:
    """A version being compared: its name and (optionally) its cost, any unit, same for both."""
    name: str
    cost: float | None = None


def non_inferiority(diff_ci_lo: float | None, margin: float) -> bool:
    """True when the lower end of the interval of mean(cheap) - mean(best) is above
    ``-margin``: the cheap version is then not worse by more than ``margin``.

    >>> non_inferiority(-0.015, 0.02), non_inferiority(-0.03, 0.02), non_inferiority(None, 0.02)
    (True, False, False)
    """
    return diff_ci_lo is not None and diff_ci_lo > -abs(margin)


def tasks_needed(diff: float, sd: float, margin: float, level: float = 0.95) -> int | None:
    """Shared tasks needed for the interval to exclude ``-margin`` if diff and sd stay as
    observed: ceil((z * sd / |diff + margin|)^2).  ``None`` when diff sits exactly on
    ``-margin`` (no number of tasks decides).

    >>> tasks_needed(diff=-0.006, sd=0.2, margin=0.02)      # (1.96 * 0.2 / 0.014)^2
    784
    """
    gap = abs(diff + abs(margin))
    if gap == 0:
        return None
    return math.ceil((z_value(level) * sd / gap) ** 2)


def _cost_phrase(cheap: Arm, best: Arm) -> str:
    if not cheap.cost or not best.cost or cheap.cost >= best.cost:
        return ""
    ratio = best.cost / cheap.cost
    if ratio >= 1.5:
        return f" at 1/{round(ratio)} of the cost"
    return f" at {100 * cheap.cost / best.cost:.0f}% of the cost"


def _evidence(r: PairedDiff) -> str:
    assert r.diff is not None and r.diff_ci is not None
    lo, hi = r.diff_ci
    return f"(diff {r.diff:+.3f} [{lo:+.3f}, {hi:+.3f}], {r.n_shared} shared tasks)"


def decision(cheap: Arm, best: Arm, result: PairedDiff, margin: float = 0.02, level: float = 0.95) -> str:
    """One plain sentence: is ``cheap`` within ``margin`` of ``best``?  ``result`` is
    ``paired_diff(best_scores, cheap_scores, level)`` (see the module docstring).

    >>> r = PairedDiff(n_shared=412, diff=-0.006, diff_ci=(-0.015, 0.003), p_value=0.2, sd=0.09)
    >>> print(decision(Arm("mini-v1", 1.0), Arm("4o-v1", 16.0), r))  # doctest: +NORMALIZE_WHITESPACE
    mini-v1 is not worse than 4o-v1 by more than 0.02 (diff -0.006 [-0.015, +0.003], 412 shared tasks)
    at 1/16 of the cost
    >>> r = PairedDiff(n_shared=120, diff=-0.01, diff_ci=(-0.05, 0.03), p_value=0.6, sd=0.22)
    >>> print(decision(Arm("mini-v1"), Arm("4o-v1"), r))  # doctest: +NORMALIZE_WHITESPACE
    The data cannot tell whether mini-v1 is within 0.02 of 4o-v1 (diff -0.010 [-0.050, +0.030], 120 shared tasks);
    about 1740 more shared ground-truth tasks would, if the difference stays as observed
    """
    m = abs(margin)
    if result.diff is None or result.diff_ci is None:
        return (f"The data cannot tell whether {cheap.name} is within {m:g} of {best.name}: "
                f"{result.n_shared} shared tasks with ground truth, and at least 2 with varying differences are needed")
    cost = _cost_phrase(cheap, best)
    if non_inferiority(result.diff_ci[0], m):
        return f"{cheap.name} is not worse than {best.name} by more than {m:g} {_evidence(result)}{cost}"
    if result.diff_ci[1] < -m:
        return f"{cheap.name} is worse than {best.name} by more than {m:g} {_evidence(result)}"
    needed = tasks_needed(result.diff, result.sd, m, level) if result.sd else None
    if needed:
        more = (f"about {max(1, needed - result.n_shared)} more shared ground-truth tasks would, "
                "if the difference stays as observed")
    else:
        more = "the difference sits right at the margin, so more tasks may not settle it"
    return f"The data cannot tell whether {cheap.name} is within {m:g} of {best.name} {_evidence(result)}; {more}"
