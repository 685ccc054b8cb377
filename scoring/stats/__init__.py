"""How sure is a score?  Pure statistics for issue 10 ("trustworthy comparisons").

No I/O, no settings: numbers in, numbers out.  Every random method takes a ``seed``
(default 0) so reruns print the same numbers, and a ``level`` (default 0.95).  An interval
is ``(lo, hi)`` or ``None`` when it is undefined (fewer than two tasks, or no spread at all
where the method needs some); an interval is never invented.

* ``intervals``  -- the mean per-task score: ``mean_ci`` (Wilson for 0/1, BCa bootstrap, t
  for large n), ``wilson``, ``t_interval``, ``bootstrap_mean_ci``.
* ``tables``     -- pooled statistics by the task bootstrap, vectorized: ``ratio_ci``,
  ``prf_ci`` (per-label precision / recall / F1), ``kappa_ci``, ``alpha_ci``, and the generic
  ``statistic_ci``.
* ``paired``     -- is B better than A: ``paired_diff`` (diff, interval, permutation p),
  ``mcnemar_exact``, ``holm``.
* ``decision``   -- is a cheaper version good enough: ``non_inferiority``,
  ``tasks_needed``, ``decision`` (one plain sentence).
* ``ppi``        -- project-wide scores from a few annotated tasks: ``ppi_mean``.
* ``active``     -- which tasks to annotate next: ``suggest_tasks``, ``ht_mean``.

Tasks are the independent units throughout: all resampling is over tasks.
"""
from __future__ import annotations

from scoring.stats._common import LARGE_N, Interval
from scoring.stats.active import HTEstimate, Suggestion, ht_mean, inclusion_probabilities, suggest_tasks
from scoring.stats.decision import Arm, decision, non_inferiority, tasks_needed
from scoring.stats.intervals import bootstrap_mean_ci, mean_ci, mean_ci_method, t_interval, wilson
from scoring.stats.paired import McNemar, PairedDiff, holm, mcnemar_exact, paired_diff, sign_flip_pvalue
from scoring.stats.ppi import PPIResult, ppi_lambda, ppi_mean
from scoring.stats.tables import alpha_ci, kappa_ci, prf_ci, ratio_ci, statistic_ci

__all__ = [
    "LARGE_N", "Interval", "HTEstimate", "Suggestion", "ht_mean", "inclusion_probabilities", "suggest_tasks",
    "Arm", "decision", "non_inferiority", "tasks_needed", "bootstrap_mean_ci", "mean_ci", "mean_ci_method",
    "t_interval", "wilson", "McNemar", "PairedDiff", "holm", "mcnemar_exact", "paired_diff", "sign_flip_pvalue",
    "PPIResult", "ppi_lambda", "ppi_mean", "alpha_ci", "kappa_ci", "prf_ci", "ratio_ci", "statistic_ci",
]
