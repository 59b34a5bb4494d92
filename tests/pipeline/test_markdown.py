"""Markdown cells: numbers get fixed digits, p-values keep their magnitude, strings stay."""

import math

from jaxirl.report.markdown import fmt, fmt_pvalue, table


def test_fmt_and_pvalues():
    assert fmt(0.12345) == "0.123" and fmt(7) == "7" and fmt(None) == fmt(math.nan) == "n/a"
    assert fmt("5.6e-26") == "5.6e-26" and fmt("1×") == "1×"
    assert fmt_pvalue(5.6e-26) == "5.6e-26" and fmt_pvalue(0.0123) == "0.012"
    assert fmt_pvalue(None) == "n/a"
    assert table(["set", "p-value"], [["toxic", fmt_pvalue(3.6e-21)]]).splitlines()[-1] == \
        "| toxic | 3.6e-21 |"


def test_significant_digits_and_intervals():
    from jaxirl.report.markdown import fmt_ci, fmt_sig

    assert fmt_sig(2.1234e-5) == "2.12e-05" and fmt_sig(0.0123456) == "0.0123"
    assert fmt_sig(0.0) == "0" and fmt_sig(None) == "n/a" and fmt_sig(12.3456) == "12.3"
    iv = {"estimate": 0.9401, "low": 0.931, "high": 0.9482}
    assert fmt_ci(iv) == "0.940 [0.931, 0.948]"
    assert fmt_ci({"estimate": 0.99, "low": 0.91, "high": 1.07}, 0, 100, "%") == "99% [91%, 107%]"
    assert fmt_ci({"estimate": 0.5, "low": math.nan, "high": math.nan}) == "0.500"
    assert fmt_ci(None) == "n/a"


def test_bootstrap_p_at_its_floor_says_at_most():
    from jaxirl.report.markdown import bootstrap_p_text

    # Two-sided with 1000 resamples: the smallest p is 2/1001, "≤ 0.002", not "0.002".
    assert bootstrap_p_text(2 / 1001, 2 / 1001) == "≤ 0.002"
    assert bootstrap_p_text(1 / 1001, 1 / 1001) == "≤ 0.001"
    assert bootstrap_p_text(0.0123, 2 / 1001) == "0.012"
    assert bootstrap_p_text(1 / 1001) == "≤ 0.001"  # results without a recorded floor
    assert bootstrap_p_text(math.nan, 0.001) == bootstrap_p_text(None) == "n/a"
