"""The record significance test: Student's t from the incomplete beta, and the decision."""

from __future__ import annotations

import math

import pytest

from golf.record.significance import (
    BAR_NATS,
    betainc,
    bpb_to_nats,
    improvement_test,
    nats_to_bpb,
    t_sf,
)


@pytest.mark.parametrize("t,df,p", [
    (2.015048, 5, 0.05), (6.964557, 2, 0.01), (31.82052, 1, 0.01), (2.763262, 28, 0.005),
    (1.0, 1, 0.25), (0.0, 7, 0.5)])  # t-table critical values; t=1, df=1 is the Cauchy's 1/4
def test_t_tail_matches_tables(t, df, p):
    assert t_sf(t, df) == pytest.approx(p, rel=1e-5)
    assert t_sf(-t, df) == pytest.approx(1 - p, rel=1e-5)


def test_t_tail_tends_to_the_normal():
    assert t_sf(2.326348, 1e7) == pytest.approx(0.01, rel=1e-4)


@pytest.mark.parametrize("a,b,x", [(1, 1, 0.3), (2.5, 1, 0.7), (1, 4, 0.2), (3, 5, 0.9), (0.5, 0.5, 0.25)])
def test_incomplete_beta_closed_forms(a, b, x):
    exact = {(1, 1): x, (2.5, 1): x**2.5, (1, 4): 1 - (1 - x) ** 4,
             (0.5, 0.5): 2 / math.pi * math.asin(math.sqrt(x))}.get((a, b))
    if exact is None:  # I_x(a, b) = 1 - I_{1-x}(b, a)
        exact = 1 - betainc(b, a, 1 - x)
    assert betainc(a, b, x) == pytest.approx(exact, rel=1e-10)


def test_nats_and_bpb_convert_both_ways():
    assert nats_to_bpb(bpb_to_nats(1.2, 2.4), 2.4) == pytest.approx(1.2)
    # val_bpb = val_loss / ln 2 × tokens / bytes
    assert nats_to_bpb(2.0, 2.5) == pytest.approx(2.0 / math.log(2) / 2.5)


def test_too_few_seeds_gives_no_p_value():
    r = improvement_test([2.0], [2.1], 2.4)
    assert r["p_value"] is None and r["passes"] is None and "too few seeds" in r["note"]
    assert r["improvement_nats"] == pytest.approx(0.1)


def test_clear_improvement_passes_and_a_marginal_one_does_not():
    strong = improvement_test([2.000, 2.001, 1.999], [2.02], 2.4)
    assert strong["passes"] and strong["p_value"] < 0.01 and strong["df"] == 2
    assert "one-sample" in strong["test"]
    # Mean improvement just above the bar with noisy seeds: not significant.
    weak = improvement_test([2.013, 2.017, 2.014], [2.02], 2.4)
    assert weak["improvement_nats"] > BAR_NATS and not weak["passes"] and weak["p_value"] > 0.01


def test_welch_with_baseline_seeds():
    r = improvement_test([2.000, 2.001, 1.999], [2.020, 2.022, 2.018, 2.021], 2.4)
    assert "Welch" in r["test"] and 2 < r["df"] < 5 and r["passes"]
    # Worse than the baseline: p near 1.
    assert improvement_test([2.03, 2.031, 2.029], [2.02, 2.021], 2.4)["p_value"] > 0.99


def test_identical_seeds_decide_by_sign():
    assert improvement_test([2.0, 2.0], [2.1], 2.4)["p_value"] == 0.0
    assert improvement_test([2.0, 2.0], [2.003], 2.4)["p_value"] == 1.0
