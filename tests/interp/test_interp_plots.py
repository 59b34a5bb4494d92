"""jaxirl.interp.plots on edge-case inputs."""

import numpy as np

from jaxirl.interp import plots
from jaxirl.interp.firing import FiringRateTest, GroupRates


def _group(estimate: float, low: float, high: float) -> GroupRates:
    return GroupRates(num_features=2, rate_on_toxic=0.4, rate_on_clean=0.2,
                      fraction_higher_on_toxic=1.0, p_value=0.5, alternative="greater",
                      difference={"estimate": 0.2, "low": 0.1, "high": 0.3},
                      selectivity={"estimate": estimate, "low": low, "high": high})


def test_firing_rates_plot_an_interval_end_a_rounding_error_past_the_estimate(tmp_path):
    # With 2 bootstrap groups a percentile end can land ~1e-17 on the wrong side of the
    # estimate; matplotlib refuses a negative error-bar length ('yerr' must not contain
    # negative values).
    est = 1 / 3
    test = FiringRateTest(
        rate_on_toxic=np.array([0.4, 0.5, 0.1]), rate_on_clean=np.array([0.2, 0.1, 0.1]),
        toxic_linked=_group(est, np.nextafter(est, 1.0), 0.5),
        clean_linked=_group(est, 0.1, np.nextafter(est, 0.0)),
        others=_group(est, 0.1, 0.5), num_toxic_texts=2, num_clean_texts=2,
        relative_threshold=0.0, unit="token", num_groups=2)
    path = plots.plot_firing_rates(test, tmp_path / "firing.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
