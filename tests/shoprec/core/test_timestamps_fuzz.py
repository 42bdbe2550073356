"""Fuzzing the timestamp parser: any text parses to an int or raises ValueError / OverflowError.

``pipelines.parse.to_timestamp`` turns exactly those two into the
``bad_timestamp`` dead letter, so anything else escaping would crash a job.
"""

import pytest
from hypothesis import example, given, settings, strategies as st

from shoprec.core import timestamps

FORMATS = ("auto", "unix_s", "unix_ms", "iso", "%Y-%m-%d %H:%M:%S", "%d/%m/%Y")
DIGITS_AND_DATES = st.text(alphabet=st.sampled_from("0123456789-+:.TZ eE/\u00b2\u0661"),
                           max_size=30)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=40), DIGITS_AND_DATES), st.sampled_from(FORMATS))
@example("1e400", "unix_s")  # inf: not finite
@example("nan", "unix_ms")
@example("\u00b2", "auto")  # a digit to str.isdigit, not to int()
@example("9" * 5000, "auto")  # past int()'s digit limit
@example("0001-01-01T00:00:00+14:00", "iso")  # before the epoch's year 1
def test_any_text_is_seconds_or_a_value_error(text, fmt):
    try:
        seconds = timestamps.to_timestamp(text, fmt)
    except (ValueError, OverflowError):
        return
    assert isinstance(seconds, int)


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_non_finite_numbers_are_refused(value):
    with pytest.raises((ValueError, OverflowError)):
        timestamps.parse_timestamp(value)
