"""Tests of the retry delays."""

import pytest

from jibrild.backoff import Backoff


@pytest.mark.fault(
    case=1,
    behaviour="Retry delays grow exponentially, doubling up to a cap.",
)
def test_ceiling_doubles_up_to_cap() -> None:
    """With the largest random draw, each delay doubles until the cap."""
    backoff = Backoff(base=1.0, cap=10.0, random_fraction=lambda: 1.0)

    delays = [backoff.next_delay() for _ in range(6)]

    assert [1.0, 2.0, 4.0, 8.0, 10.0, 10.0] == delays


@pytest.mark.fault(
    case=1,
    behaviour="Retry delays use full jitter, so a fleet spreads its retries.",
)
def test_full_jitter_can_be_zero() -> None:
    """Full jitter draws from zero up, so the smallest draw waits nothing."""
    backoff = Backoff(base=1.0, cap=10.0, random_fraction=lambda: 0.0)

    delays = [backoff.next_delay() for _ in range(3)]

    assert [0.0, 0.0, 0.0] == delays


def test_retry_after_is_a_floor() -> None:
    """A server's Retry-After is waited at least, with a tenth of spread."""
    backoff = Backoff(base=1.0, cap=10.0, random_fraction=lambda: 0.5)

    delay = backoff.next_delay(retry_after=30.0)

    assert 31.5 == delay


def test_retry_after_longer_than_an_hour_is_capped() -> None:
    """An absurd Retry-After is taken as one hour."""
    backoff = Backoff(random_fraction=lambda: 0.0)

    delay = backoff.next_delay(retry_after=10 * 86400.0)

    assert 3600.0 == delay


def test_reset_starts_over() -> None:
    """After reset the next delay is the first attempt's again."""
    backoff = Backoff(base=2.0, cap=100.0, random_fraction=lambda: 1.0)
    for _ in range(4):
        backoff.next_delay()

    backoff.reset()

    assert 0 == backoff.attempt
    assert 2.0 == backoff.next_delay()


def test_floor_fraction_raises_bottom() -> None:
    """With a floor of one half, the smallest draw waits half the ceiling."""
    backoff = Backoff(
        base=60.0, cap=3600.0, random_fraction=lambda: 0.0, floor_fraction=0.5
    )

    delays = [backoff.next_delay() for _ in range(3)]

    assert [30.0, 60.0, 120.0] == delays


def test_cap_raises_bottom_of_range() -> None:
    """Once the ceiling is the cap, the smallest draw waits three quarters
    of the cap."""
    backoff = Backoff(base=1.0, cap=4.0, random_fraction=lambda: 0.0)

    delays = [backoff.next_delay() for _ in range(4)]

    assert [0.0, 0.0, 3.0, 3.0] == delays
