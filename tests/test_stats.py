"""Tests of scoring.stats: agreement with reference implementations (scipy, statsmodels,
scikit-learn, krippendorff) on worked examples, and seeded simulations with a known truth
(interval coverage, test size and power, PPI, active sampling).  Run with ``pytest -s`` to
see the simulation figures."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as st
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from scoring.agreement import cohen_kappa, krippendorff_alpha
from scoring.stats import (
    LARGE_N,
    Arm,
    PairedDiff,
    alpha_ci,
    decision,
    holm,
    ht_mean,
    inclusion_probabilities,
    kappa_ci,
    mcnemar_exact,
    mean_ci,
    mean_ci_method,
    non_inferiority,
    paired_diff,
    ppi_mean,
    prf_ci,
    ratio_ci,
    sign_flip_pvalue,
    statistic_ci,
    suggest_tasks,
    t_interval,
    tasks_needed,
    wilson,
)
from scoring.stats._common import resampled_sums
from scoring.stats.tables import alpha_from_coincidences, coincidence_rows, kappa_from_tables


def _covers(ci, truth: float) -> bool:
    return ci is not None and ci[0] <= truth <= ci[1]


def _report(name: str, covered: list[bool], widths: list[float]) -> float:
    rate = float(np.mean(covered))
    print(f"\n[stats] {name}: coverage {rate:.3f} over {len(covered)} samples, mean width {np.mean(widths):.4f}")
    return rate


# --- reference implementations on worked examples -------------------------------------------

@pytest.mark.parametrize("table", [
    [[10, 5], [2, 30]], [[50, 0], [0, 50]], [[0, 3], [9, 0]], [[101, 121], [59, 33]],
    [[20, 14], [14, 20]], [[7, 1], [0, 4]], [[300, 40], [22, 90]],
])
def test_mcnemar_exact_equals_statsmodels(table):
    (n11, n10), (n01, n00) = table
    a = [1] * (n11 + n10) + [0] * (n01 + n00)
    b = [1] * n11 + [0] * n10 + [1] * n01 + [0] * n00
    got = mcnemar_exact(a, b)
    assert (got.b, got.c) == (n10, n01)
    assert got.p_value == pytest.approx(sm_mcnemar(np.array(table), exact=True).pvalue, rel=1e-12, abs=1e-15)


def test_mcnemar_rejects_non_binary_scores():
    with pytest.raises(ValueError, match="0/1"):
        mcnemar_exact([1, 0.5], [1, 0])


@pytest.mark.parametrize("p", [
    [0.01, 0.04, 0.03, 0.20], [0.5], [0.001, 0.001, 0.2, 0.04, 0.8, 0.6], [0.3, 0.4, 0.45, 0.5],
    list(np.random.default_rng(3).uniform(0, 0.2, 25)),
])
def test_holm_equals_statsmodels(p):
    assert holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]), rel=1e-12)


def test_mean_ci_equals_scipy_bootstrap_with_the_same_seed():
    x = np.random.default_rng(7).beta(2, 5, 60)
    ref = st.bootstrap((x,), np.mean, confidence_level=0.9, n_resamples=9999, method="BCa",
                       rng=np.random.default_rng(11), vectorized=True).confidence_interval
    assert mean_ci(x, level=0.9, seed=11) == pytest.approx((ref.low, ref.high), rel=1e-12)
    assert mean_ci(x, level=0.9, seed=11) == mean_ci(list(x), level=0.9, seed=11)   # reruns repeat


@pytest.mark.parametrize("k,n", [(0, 20), (3, 10), (81, 100), (500, 501), (20, 20)])
def test_wilson_equals_statsmodels(k, n):
    assert wilson(k, n, 0.95) == pytest.approx(proportion_confint(k, n, 0.05, method="wilson"), abs=1e-12)


def test_t_interval_equals_scipy():
    x = np.random.default_rng(2).normal(0.6, 0.2, 30)
    ref = st.t.interval(0.9, len(x) - 1, loc=x.mean(), scale=st.sem(x))
    assert t_interval(x, 0.9) == pytest.approx(ref, rel=1e-12)


def test_sign_flip_pvalue_equals_scipy_permutation_test_when_exact():
    rng = np.random.default_rng(5)
    for n in (5, 8, 12):
        a, b = rng.random(n), rng.random(n) + 0.2
        ref = st.permutation_test((a, b), lambda x, y, axis: np.mean(y - x, axis=axis), vectorized=True,
                                  permutation_type="samples", n_resamples=np.inf).pvalue
        assert sign_flip_pvalue(b - a, n_resamples=9999) == pytest.approx(ref, rel=1e-12)


def test_kappa_and_alpha_point_estimates_equal_the_libraries():
    rng = np.random.default_rng(4)
    labels = np.array(["pos", "neg", "neu"])
    ref = list(labels[rng.integers(0, 3, 200)])
    pred = [r if rng.random() < 0.7 else str(labels[rng.integers(0, 3)]) for r in ref]
    table = np.zeros((3, 3))
    for r, p in zip(ref, pred, strict=True):
        table[list(labels).index(r), list(labels).index(p)] += 1
    assert float(kappa_from_tables(table)) == pytest.approx(cohen_kappa(ref, pred), rel=1e-12)
    third = [None if rng.random() < 0.3 else p for p in pred]
    rows = [ref, pred, third]
    assert float(alpha_from_coincidences(coincidence_rows(rows).sum(axis=0))) == pytest.approx(
        krippendorff_alpha(rows), rel=1e-9)


def test_generic_statistic_ci_agrees_with_the_vectorized_kappa_ci():
    rng = np.random.default_rng(8)
    ref = list(rng.choice(["a", "b", "c"], 150))
    pred = [r if rng.random() < 0.75 else "a" for r in ref]
    fast = kappa_ci(ref, pred, seed=1)
    slow = statistic_ci(list(zip(ref, pred, strict=True)),
                        lambda items: cohen_kappa([r for r, _ in items], [p for _, p in items]), seed=2)
    assert fast is not None and slow is not None
    assert fast == pytest.approx(slow, abs=0.03)      # two Monte Carlo runs of the same bootstrap


def test_resampled_sums_paths_agree_and_are_seeded():
    rng = np.random.default_rng(9)
    few = rng.integers(0, 3, size=(4000, 2)).astype(float)      # few distinct rows: multinomial path
    many = rng.random((400, 2))                                  # all distinct: index path
    huge = rng.random((LARGE_N * 2, 2))                          # many distinct: normal limit
    for rows in (few, many, huge):
        sums = resampled_sums(rows, 3000, seed=1)
        n = len(rows)
        assert sums.mean(axis=0) == pytest.approx(rows.sum(axis=0), rel=0.01)
        assert sums.std(axis=0) == pytest.approx(math.sqrt(n) * rows.std(axis=0), rel=0.06)
        assert np.array_equal(sums, resampled_sums(rows, 3000, seed=1))


# --- undefined intervals are None, never invented --------------------------------------------

def test_undefined_intervals_are_none():
    assert mean_ci([]) is None and mean_ci([0.7]) is None and mean_ci([None, 0.4, None]) is None
    assert mean_ci([0.4] * 30) is None                              # no spread, not 0/1
    assert mean_ci([1] * 30) == pytest.approx(wilson(30, 30))        # 0/1: Wilson is defined
    assert mean_ci([0.4] * 3000) is None                            # also on the t path
    assert ratio_ci([0, 0, 0], [0, 0, 0]) is None
    ci = prf_ci({"PER": [(2, 0, 1), (1, 0, 0), (3, 0, 2)], "ORG": [(0, 0, 0)] * 3})
    assert ci["PER"]["precision"] is None                           # no false positive in any resample
    assert ci["PER"]["recall"] is not None
    assert ci["ORG"] == {"precision": None, "recall": None, "f1": None}
    assert kappa_ci(["a"] * 10, ["a"] * 10) is None and alpha_ci([["a"] * 5, ["a"] * 5]) is None
    assert paired_diff([0.5, 0.7], [0.5, 0.7]).diff_ci is None
    assert paired_diff({"t1": 1.0}, {"t2": 0.0}) == PairedDiff(0, None, None, None)
    r = ppi_mean([1.0], [1.0], [0.0, 1.0])
    assert r.score == 1.0 and r.ci is None and r.classical_ci is None


def test_paired_diff_matches_tasks_by_id_and_skips_unscored_ones():
    a = {"t1": 0.2, "t2": 0.9, "t3": None, "t4": 0.5}
    b = {"t4": 0.7, "t2": 1.0, "t1": 0.6, "t3": 0.4, "t5": 1.0}
    r = paired_diff(a, b)
    assert r.n_shared == 3 and r.diff == pytest.approx((0.4 + 0.1 + 0.2) / 3)


def test_mean_ci_method_switch():
    assert mean_ci_method(LARGE_N, False) == "bca" and mean_ci_method(LARGE_N + 1, False) == "t"
    x = np.random.default_rng(1).beta(5, 2, LARGE_N + 1)
    assert mean_ci(x) == pytest.approx(t_interval(x))


# --- simulations with a known truth ------------------------------------------------------------

def test_mean_ci_coverage_for_exact_match_scores():
    rng = np.random.default_rng(100)
    for p, n, sims in ((0.8, 200, 2000), (0.93, 150, 2000)):
        samples = rng.random((sims, n)) < p
        cis = [mean_ci(s.astype(float)) for s in samples]
        rate = _report(f"Wilson, 0/1 scores p={p} n={n}", [_covers(c, p) for c in cis], [c[1] - c[0] for c in cis])
        assert 0.93 <= rate <= 0.97


def test_mean_ci_coverage_for_continuous_scores():
    rng = np.random.default_rng(200)
    a, b = 5.0, 2.0                      # similarity-like scores piled up towards 1, mean 5/7
    truth = a / (a + b)
    for n, sims in ((150, 1000), (LARGE_N + 500, 1000)):
        samples = rng.beta(a, b, size=(sims, n))
        cis = [mean_ci(s, n_resamples=2000, seed=i) for i, s in enumerate(samples)]
        rate = _report(f"{mean_ci_method(n, False)}, Beta(5,2) scores n={n}", [_covers(c, truth) for c in cis],
                       [c[1] - c[0] for c in cis])
        assert 0.93 <= rate <= 0.97


def test_prf_and_kappa_interval_coverage():
    rng = np.random.default_rng(300)
    covered, widths = [], []
    for i in range(1000):
        spans = rng.poisson(2.0, 250)
        tp = rng.binomial(spans, 0.8)
        ci = prf_ci({"X": np.column_stack([tp, spans - tp, rng.poisson(0.5, 250)])}, seed=i)["X"]["precision"]
        covered.append(_covers(ci, 0.8))
        widths.append(ci[1] - ci[0])
    rate_p = _report("task bootstrap, pooled precision (true 0.8) n=250 tasks", covered, widths)
    probs = np.array([[0.30, 0.05, 0.02], [0.04, 0.25, 0.04], [0.03, 0.07, 0.20]])
    truth = float(kappa_from_tables(probs))
    covered, widths = [], []
    for i in range(600):
        cells = rng.choice(9, size=300, p=probs.ravel())
        ci = kappa_ci(list(cells // 3), list(cells % 3), seed=i)
        covered.append(_covers(ci, truth))
        widths.append(ci[1] - ci[0])
    rate_k = _report(f"task bootstrap, Cohen's kappa (true {truth:.3f}) n=300 tasks", covered, widths)
    assert 0.93 <= rate_p <= 0.97 and 0.92 <= rate_k <= 0.98


def _paired_binary(rng: np.random.Generator, n: int, only_a: float, only_b: float) -> tuple[np.ndarray, np.ndarray]:
    """0/1 scores of A and B on n shared tasks: A right alone with prob only_a, B alone only_b,
    both right with 0.6, both wrong otherwise (so B - A has mean only_b - only_a)."""
    cell = rng.choice(4, size=n, p=[0.6, only_a, only_b, 0.4 - only_a - only_b])
    return np.isin(cell, (0, 1)).astype(float), np.isin(cell, (0, 2)).astype(float)


def test_paired_test_size_and_power():
    rng = np.random.default_rng(400)
    null_pairs = [_paired_binary(rng, 400, 0.10, 0.10) for _ in range(1000)]
    size = float(np.mean([sign_flip_pvalue(b - a, seed=i, n_resamples=999) < 0.05
                          for i, (a, b) in enumerate(null_pairs)]))
    null = [paired_diff(a, b, seed=i, n_resamples=999) for i, (a, b) in enumerate(null_pairs[:400])]
    ci_cover = float(np.mean([_covers(r.diff_ci, 0.0) for r in null]))
    alt_pairs = [_paired_binary(rng, 400, 0.06, 0.14) for _ in range(400)]
    alt = [paired_diff(a, b, seed=i, n_resamples=999) for i, (a, b) in enumerate(alt_pairs)]
    power = float(np.mean([r.p_value < 0.05 for r in alt]))
    mc_power = float(np.mean([mcnemar_exact(a, b).p_value < 0.05 for a, b in alt_pairs]))
    print(f"\n[stats] paired permutation test, 400 shared 0/1 tasks: rejects {size:.3f} with no difference "
          f"(1000 sims; the diff interval covers 0 in {ci_cover:.3f} of 400); power {power:.3f} for a true diff "
          f"of +0.08 (400 sims; exact McNemar {mc_power:.3f}); mean interval width "
          f"{np.mean([r.diff_ci[1] - r.diff_ci[0] for r in alt]):.4f}")
    assert 0.03 <= size <= 0.07 and power > 0.80 and 0.92 <= ci_cover <= 0.98


def _ppi_sample(rng: np.random.Generator, n: int, big_n: int, p: float, proxy_ok: float):
    y = (rng.random(n + big_n) < p).astype(float)
    yhat = np.where(rng.random(n + big_n) < proxy_ok, y, 1 - y)
    return y[:n], yhat[:n], yhat[n:]


def test_ppi_coverage_and_width():
    rng = np.random.default_rng(500)
    p = 0.7
    rows = {"ppi": ([], []), "ppi++": ([], []), "classical": ([], [])}
    for _ in range(2000):
        y, yl, yu = _ppi_sample(rng, 200, 5000, p, proxy_ok=0.9)
        plain, tuned = ppi_mean(y, yl, yu, lam=1.0), ppi_mean(y, yl, yu)
        for key, ci in (("ppi", plain.ci), ("ppi++", tuned.ci), ("classical", plain.classical_ci)):
            rows[key][0].append(_covers(ci, p))
            rows[key][1].append(ci[1] - ci[0])
    rates = {k: _report(f"{k}, n=200 labeled + 5000 unlabeled, proxy right 90%", *v) for k, v in rows.items()}
    assert all(0.93 <= r <= 0.97 for r in rates.values())
    assert np.mean(rows["ppi"][1]) < 0.8 * np.mean(rows["classical"][1])
    assert np.mean(rows["ppi++"][1]) <= np.mean(rows["ppi"][1])


def test_ppi_plus_plus_falls_back_towards_classical_with_a_useless_proxy():
    rng = np.random.default_rng(600)
    widths = {"ppi": [], "ppi++": [], "classical": []}
    for _ in range(300):
        y = (rng.random(200) < 0.7).astype(float)
        yl, yu = (rng.random(200) < 0.5).astype(float), (rng.random(3000) < 0.5).astype(float)   # noise
        plain, tuned = ppi_mean(y, yl, yu, lam=1.0), ppi_mean(y, yl, yu)
        widths["ppi"].append(plain.ci[1] - plain.ci[0])
        widths["ppi++"].append(tuned.ci[1] - tuned.ci[0])
        widths["classical"].append(plain.classical_ci[1] - plain.classical_ci[0])
    w = {k: float(np.mean(v)) for k, v in widths.items()}
    print(f"\n[stats] useless proxy: mean widths {w}")
    assert w["ppi"] > w["classical"] and w["ppi++"] < 1.05 * w["classical"]


def _pool(rng: np.random.Generator, n: int):
    """A and B disagree on 15% of tasks; there, B is right 60% and A 35% of the time."""
    disagree = rng.random(n) < 0.15
    both = (rng.random(n) < 0.7).astype(float)
    a = np.where(disagree, rng.random(n) < 0.35, both).astype(float)
    b = np.where(disagree, rng.random(n) < 0.60, both).astype(float)
    return disagree.astype(float), b - a


def test_suggest_tasks_gives_unbiased_and_narrower_estimates():
    rng = np.random.default_rng(700)
    disagree, diff = _pool(rng, 4000)
    truth = float(diff.mean())
    ids = [f"t{i}" for i in range(len(diff))]
    found = {"disagreement": ([], [], []), "uniform": ([], [], [])}
    for i in range(800):
        for name, signal in (("disagreement", disagree), ("uniform", np.zeros_like(disagree))):
            s = suggest_tasks(dict(zip(ids, signal, strict=True)), budget=200, seed=i)
            r = ht_mean([diff[int(t[1:])] for t in s.task_ids], s.inclusion, len(ids))
            found[name][0].append(r.score)
            found[name][1].append(_covers(r.ci, truth))
            found[name][2].append(len(s.task_ids))
    for name, (scores, covered, sizes) in found.items():
        print(f"\n[stats] {name} sampling, budget 200 of 4000 (true diff {truth:+.4f}): mean estimate "
              f"{np.mean(scores):+.4f}, sd {np.std(scores):.4f}, coverage {np.mean(covered):.3f}, "
              f"mean picks {np.mean(sizes):.1f}")
        assert abs(np.mean(scores) - truth) < 3 * np.std(scores) / math.sqrt(len(scores))
        assert abs(np.mean(sizes) - 200) < 3
    assert np.std(found["disagreement"][0]) < 0.7 * np.std(found["uniform"][0])
    assert np.mean(found["disagreement"][1]) >= 0.9


def test_inclusion_probabilities_are_capped_and_sum_to_the_budget():
    pi = inclusion_probabilities(np.random.default_rng(1).pareto(1.0, 500) + 0.01, 50)
    assert pi.sum() == pytest.approx(50) and pi.max() == 1.0 and pi.min() > 0
    with pytest.raises(ValueError):
        suggest_tasks({"t1": 0.5}, budget=1, floor=0)


# --- the verdict sentence -----------------------------------------------------------------------

def test_decision_sentences():
    cheap, best = Arm("mini-v1", 0.5), Arm("4o-v1", 8.0)
    ok = PairedDiff(412, -0.006, (-0.015, 0.003), 0.2, 0.09)
    assert decision(cheap, best, ok) == ("mini-v1 is not worse than 4o-v1 by more than 0.02 "
                                         "(diff -0.006 [-0.015, +0.003], 412 shared tasks) at 1/16 of the cost")
    worse = PairedDiff(900, -0.06, (-0.08, -0.04), 0.0001, 0.3)
    assert decision(cheap, best, worse).startswith("mini-v1 is worse than 4o-v1 by more than 0.02 (diff -0.060")
    unsure = PairedDiff(120, -0.01, (-0.05, 0.03), 0.6, 0.22)
    needed = math.ceil((1.959963984540054 * 0.22 / 0.01) ** 2)
    assert f"about {needed - 120} more shared ground-truth tasks" in decision(cheap, best, unsure)
    assert "cannot tell" in decision(cheap, best, PairedDiff(1, 0.0, None, 1.0))
    assert non_inferiority(-0.019, 0.02) and not non_inferiority(-0.021, 0.02)


def test_tasks_needed_gives_an_interval_that_just_reaches_the_margin():
    rng = np.random.default_rng(800)
    margin, true_diff, sd = 0.02, -0.005, 0.25
    n = tasks_needed(true_diff, sd, margin)
    d = rng.normal(0, 1, n)
    d = true_diff + sd * (d - d.mean()) / d.std(ddof=1)      # exactly the observed diff and sd
    lo, _ = t_interval(d)
    print(f"\n[stats] tasks_needed: {n} tasks; interval lower end {lo:+.5f} vs -margin {-margin}")
    assert lo == pytest.approx(-margin, abs=2e-4)


def test_paired_diff_large_n_uses_the_normal_limits():
    rng = np.random.default_rng(900)
    a = rng.random(LARGE_N * 3)
    b = a + rng.normal(0.01, 0.2, a.size)
    r = paired_diff(a, b)
    d = b - a
    assert r.diff_ci == pytest.approx(t_interval(d))
    assert r.p_value == pytest.approx(st.ttest_1samp(d, 0).pvalue, rel=0.05)


@pytest.mark.parametrize("n", [3, 6])
def test_exact_sign_flip_counts_every_pattern(n):
    d = np.arange(1, n + 1) / 10
    means = [abs(np.dot(s, d)) / n for s in itertools.product((-1, 1), repeat=n)]
    expected = np.mean([m >= abs(d.mean()) - 1e-12 for m in means])
    assert sign_flip_pvalue(d) == pytest.approx(expected)


@pytest.mark.parametrize("module", ["_common", "intervals", "tables", "paired", "decision", "ppi", "active"])
def test_worked_examples_in_docstrings(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"scoring.stats.{module}"), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_same_seed_same_numbers_and_level_is_respected():
    rng = np.random.default_rng(10)
    x, y = rng.beta(5, 2, 300), rng.beta(5, 2, 300)
    counts = {"A": rng.integers(0, 3, size=(300, 3))}
    ref, pred = list(rng.integers(0, 3, 300)), list(rng.integers(0, 3, 300))
    runs = [(mean_ci(x, seed=s), prf_ci(counts, seed=s), kappa_ci(ref, pred, seed=s), paired_diff(x, y, seed=s),
             suggest_tasks(dict(enumerate(x)), 20, seed=s)) for s in (3, 3, 4)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    for fn in (lambda lv: mean_ci(x, lv), lambda lv: kappa_ci(ref, pred, lv), lambda lv: ppi_mean(x, y, x, lv).ci):
        narrow, wide = fn(0.8), fn(0.99)
        assert wide[0] < narrow[0] < narrow[1] < wide[1]
    with pytest.raises(ValueError, match="between 0 and 1"):
        mean_ci(x, level=95)
