"""Cohen's kappa and Krippendorff's alpha: by hand on tiny cases, and against the
reference libraries on random data."""
import random

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from scoring.agreement import cohen_kappa, krippendorff_alpha


def test_kappa_by_hand():
    # 6 items, agreement on 4: po = 4/6; ref marginals a:3 b:3, pred a:3 b:3 -> pe = 0.5
    ref = ["a", "a", "a", "b", "b", "b"]
    pred = ["a", "a", "b", "b", "b", "a"]
    assert cohen_kappa(ref, pred) == pytest.approx((4 / 6 - 0.5) / (1 - 0.5))


def test_alpha_by_hand():
    # units (a,a) (a,b) (b,b) (b,b) (c,c): coincidences n_a 3, n_b 5, n_c 2, n = 10;
    # observed disagreement: o_ab + o_ba = 2; expected: sum_{c != k} n_c n_k = 2*(15 + 6 + 10) = 62
    rows = [["a", "a", "b", "b", "c"], ["a", "b", "b", "b", "c"]]
    assert krippendorff_alpha(rows) == pytest.approx(1 - 9 * 2 / 62)


def test_alpha_with_missing_values_by_hand():
    # third source missing on unit 1; unit 3 coded by one source only (not pairable)
    # pairable values: u1 (a,a), u2 (a,b,b): o_aa = 2 + 0, o_ab = o_ba = 2 * 1/2 = 1, o_bb = 2/2 = 1
    # n_a = 3, n_b = 2, n = 5: alpha = 1 - (n - 1) * 2 / (2 * 3 * 2) = 1 - 4*2/12
    rows = [["a", "a", None], ["a", "b", "c"], [None, "b", None]]
    assert krippendorff_alpha(rows) == pytest.approx(1 - 4 * 2 / 12)


def test_undefined_statistics_are_none():
    assert cohen_kappa([], []) is None
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None            # no variation: 0/0
    assert krippendorff_alpha([["a", "a"], ["a", "a"]]) is None
    assert krippendorff_alpha([["a", None], [None, "b"]], ["a", "b"]) is None   # no unit with two values
    assert krippendorff_alpha([["a", "b"]]) is None                # one source


@pytest.mark.parametrize("seed", range(8))
def test_kappa_matches_scikit_learn_on_random_data(seed):
    rng = random.Random(seed)
    labels = ["pos", "neg", "neu", "other"][: rng.randint(2, 4)]
    n = rng.randint(5, 300)
    ref = [rng.choice(labels) for _ in range(n)]
    pred = [r if rng.random() < 0.6 else rng.choice(labels) for r in ref]
    expected = cohen_kappa_score(ref, pred)
    if np.isnan(expected):
        assert cohen_kappa(ref, pred) is None
    else:
        assert cohen_kappa(ref, pred) == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(8))
def test_alpha_matches_krippendorff_on_random_data(seed):
    rng = random.Random(100 + seed)
    labels = ["x", "y", "z"]
    n_sources, n_units = rng.randint(2, 5), rng.randint(5, 200)
    rows = [[rng.choice(labels) if rng.random() > 0.2 else None for _ in range(n_units)] for _ in range(n_sources)]
    codes = np.array([[np.nan if v is None else labels.index(v) for v in row] for row in rows], dtype=float)
    expected = krippendorff.alpha(reliability_data=codes, level_of_measurement="nominal", value_domain=[0, 1, 2])
    assert krippendorff_alpha(rows, labels) == pytest.approx(expected)


def test_two_source_alpha_close_to_kappa_on_large_samples():
    rng = random.Random(7)
    ref = [rng.choice("abc") for _ in range(2000)]
    pred = [r if rng.random() < 0.7 else rng.choice("abc") for r in ref]
    assert krippendorff_alpha([ref, pred]) == pytest.approx(cohen_kappa(ref, pred), abs=0.01)
