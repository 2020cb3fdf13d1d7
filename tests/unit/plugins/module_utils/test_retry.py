import pytest

from puller.core._errors import PermanentPullError, TransientPullError
from puller.core._retry import RetryPolicy


def test_delays_grow_exponentially_within_jitter_and_cap():
    policy = RetryPolicy(attempts=10, base=0.5, cap=4)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (9, 4.0)]:
        assert policy.delay(attempt, rng=lambda: 0.0) == ceiling / 2
        assert policy.delay(attempt, rng=lambda: 1.0) == ceiling


def test_only_transient_errors_are_retried_and_only_up_to_attempts():
    policy = RetryPolicy(attempts=3)
    assert policy.should_retry(1, TransientPullError("503"))
    assert policy.should_retry(2, TransientPullError("503"))
    assert not policy.should_retry(3, TransientPullError("503"))
    assert not policy.should_retry(1, PermanentPullError("unauthorized"))


def test_one_attempt_means_no_retry():
    assert not RetryPolicy(attempts=1).should_retry(1, TransientPullError("x"))


@pytest.mark.parametrize("kwargs", [{"attempts": 0}, {"base": -1}])
def test_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)
