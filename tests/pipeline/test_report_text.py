"""The report's words: readable paths, provenance, and the verdict rules."""

import math
import re

from jaxirl.report import verdicts
from jaxirl.report.provenance import git_commit, package_versions, readable_path


def test_paths_are_relative_or_named(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXIRL_CACHE", str(tmp_path / "cache"))
    work = tmp_path / "work"
    assert readable_path(work / "interp-1" / "a.png", work) == "interp-1/a.png"
    assert readable_path(tmp_path / "cache" / "default-model-x", work) == \
        "$JAXIRL_CACHE/default-model-x"
    assert readable_path("EleutherAI/pythia-70m", work) == "EleutherAI/pythia-70m"


def test_provenance():
    assert re.fullmatch(r"[0-9a-f]{10}(\+uncommitted)?|unknown", git_commit())
    versions = package_versions()
    assert {"python", "jax", "flax", "numpy"} <= set(versions)


def _iv(estimate, low, high):
    return {"estimate": estimate, "low": low, "high": high}


def test_verdict_rules():
    high = verdicts.identifiability(_iv(0.93, 0.92, 0.94), _iv(0.69, 0.66, 0.72))
    assert high.startswith("High agreement") and "86%" in high and "every seed misses" in high
    low = verdicts.identifiability(_iv(0.5, 0.4, 0.6), _iv(0.45, 0.4, 0.5))
    assert low.startswith("Low agreement") and "seed noise" in low
    assert verdicts.rerlhf({"share": 0.99, "low": 0.91, "high": 1.07}).startswith("Works:")
    assert verdicts.rerlhf({"share": 0.8, "low": 0.6, "high": 0.9}).startswith("Works partly")
    assert verdicts.rerlhf({"share": -0.3, "low": -15, "high": 12}).startswith("Inconclusive")
    assert verdicts.rerlhf({"share": math.nan, "low": math.nan, "high": math.nan}).startswith(
        "Not measurable")
    assert verdicts.sae_vs_random(0.04, 0.09, -0.09, -0.02).startswith("Random directions")
    assert verdicts.sae_vs_random(0.09, 0.04, 0.02, 0.09).startswith("SAE features are")
    assert "no more selective" in verdicts.firing_vs_random(_iv(0.03, -0.01, 0.07))


def test_identifiability_when_each_seed_tracks_the_truth_better_than_the_others():
    # Seeds = truth + independent noise: r (seed vs seed) ~ t², so t > r.
    text = verdicts.identifiability(_iv(0.50, 0.45, 0.55), _iv(0.80, 0.75, 0.85))
    assert "averaging seeds helps" in text and "(r = 0.80)" in text
    assert "about as well" not in text and "poorly identified" not in text
    same = verdicts.identifiability(_iv(0.50, 0.45, 0.55), _iv(0.55, 0.5, 0.6))
    assert "poorly identified" in same and "about as well" in same


def test_clean_linked_note_reports_the_count_when_the_test_can_reach_significance():
    from jaxirl.report.interp_section import _clean_linked_note

    base = {"base_rate": 0.3, "top_k": 20, "fdr": 0.05, "num_clean_linked": 12}
    reachable = _clean_linked_note({**base, "min_depletion_p": 0.7 ** 20})
    assert "12 SAE features" in reachable and "cannot be detected" not in reachable
    floor = _clean_linked_note({**base, "top_k": 5, "min_depletion_p": 0.7 ** 5})
    assert "cannot be detected" in floor and "left out" in floor
