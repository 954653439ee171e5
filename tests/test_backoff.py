"""The daemon's Redis retry schedule: doubling waits, capped, reset by a success."""
from __future__ import annotations

import pytest

from streammoe.service.backoff import Backoff
from streammoe.service.settings import RedisSettings


def test_waits_double_up_to_the_cap_and_a_success_resets_them():
    b = Backoff(0.1, 1.0)
    assert not b.failing and b.ready(0.0)
    waits = [b.failure(now=10.0) for _ in range(6)]
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert b.failing and b.failing_since == 10.0
    assert not b.ready(10.5) and b.ready(11.0)  # next try = last failure + last wait
    assert b.success() is not None
    assert not b.failing and b.delay() == 0.0 and b.ready(0.0)
    assert b.success() is None  # nothing was failing


def test_a_cap_below_the_first_wait_is_refused():
    with pytest.raises(ValueError, match="base"):
        Backoff(1.0, 0.5)
    with pytest.raises(ValueError, match="retry_cap_s"):
        RedisSettings(retry_base_s=2.0, retry_cap_s=1.0)
