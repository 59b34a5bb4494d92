"""The report's verdicts at their boundaries."""




def _iv(e, lo, hi):
    return {"estimate": e, "low": lo, "high": hi}


def test_verdict_boundaries():
    from jaxirl.report import verdicts
    assert verdicts.identifiability(_iv(0.65, 0.6, 0.7), _iv(0.6, 0.55, 0.65)).startswith("Low")
    assert verdicts.identifiability(_iv(0.7, 0.65, 0.75), _iv(0.6, 0.55, 0.65)).startswith("Moderate")
    assert verdicts.rerlhf({"share": -0.1, "low": -0.4, "high": 0.3}).startswith("Does not clearly")
    assert verdicts.rerlhf({"share": 0.1, "low": -0.4, "high": -0.05}).startswith("Fails")
