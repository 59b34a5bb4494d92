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
