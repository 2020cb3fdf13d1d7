import pytest
from hypothesis import given, strategies as st

from puller.core._godur import format_duration, parse_duration


@pytest.mark.parametrize("seconds,text", [
    (0, "0s"),
    (3.539696838, "3.539696838s"),
    (5.112453988, "5.112453988s"),
    (62.5, "1m2.5s"),
    (0.5123, "512.3ms"),
    (0.0000012, "1.2\u00b5s"),
    (0.000000005, "5ns"),
    (3600, "1h0m0s"),
    (3723.25, "1h2m3.25s"),
    (1, "1s"),
    (-1.5, "-1.5s"),
])
def test_format_matches_go(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text,seconds", [
    ("30m", 1800), ("1m2.5s", 62.5), ("300ms", 0.3), ("1h", 3600), ("2s", 2), ("30", 30), ("0", 0),
    ("1.5h", 5400), ("10us", 0.00001),
])
def test_parse(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "1x", "s", "1m2", "-", "1..5s"])
def test_parse_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10 ** 15))
def test_round_trip(ns):
    assert round(parse_duration(format_duration(ns / 1e9)) * 1e9) == pytest.approx(ns, abs=2)
