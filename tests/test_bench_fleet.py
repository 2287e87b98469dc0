"""Tests of the fleet simulation behind `make bench`, at a small scale."""

from bench.fleet import simulate

OUTAGE_SECONDS = 120.0
# The registration backoff's cap: no wait is longer.
CAP_SECONDS = 300.0


def test_fleet_registers_every_agent() -> None:
    """Every agent registers after the outage, within one capped wait."""
    result = simulate(agents=200, outage_s=OUTAGE_SECONDS, seed=1)

    assert 200 == result.agents
    assert 0 < result.recovery_s <= CAP_SECONDS


def test_fleet_retries_during_outage() -> None:
    """Each agent fails at least once while the API is down, and the
    busiest window is at least as busy as the mean."""
    result = simulate(agents=200, outage_s=OUTAGE_SECONDS, seed=1)

    assert result.attempts > 2 * result.agents
    assert result.peak_to_mean >= 1.0
    assert result.peak_per_s >= result.mean_per_s


def test_fleet_same_seed_same_result() -> None:
    """The simulation runs in virtual time, so a seed fixes its outcome."""
    first = simulate(agents=50, outage_s=OUTAGE_SECONDS, seed=7)
    second = simulate(agents=50, outage_s=OUTAGE_SECONDS, seed=7)

    assert first == second
