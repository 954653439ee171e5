"""Label alignment on the real broker and Redis: a representative subset of the matrix
partitions {1, 2, 4, 8} x processes {1, 2} x labels {inline, delayed 100, delayed 5000,
shuffled within 500} x {backlog, live} (the whole matrix, with several seeds per case, is
``benchmarks/label_matrix.py``).  Every case: every event predicted, every label learned
exactly once, no dead letter, and each partition's model equal to the offline model fed the
same (event, label) pairs in the same order (see :mod:`streammoe.testing.label_matrix`).

The daemons run with the operator defaults (``serve.align_idle_ms`` = 500 ms): with 4 input and
labels partitions on a backlog, kafka-python fetches the partitions independently, and labels
used to be released before their input partition was read and dead-lettered as
``unknown_event_id`` (issue 11)."""
from __future__ import annotations

import pytest

from streammoe.testing.label_matrix import Case, check_case, run_case

CASES = [
    Case(4, 1, "delayed", "backlog", n_events=3_000, delay=100),    # the case of issue 11
    Case(4, 2, "delayed", "backlog", n_events=3_000, delay=100),
    Case(8, 1, "shuffled", "backlog", n_events=2_000, window=500),
    Case(1, 1, "delayed", "backlog", n_events=1_500, delay=5_000),  # every label after the last event
    Case(2, 2, "delayed", "live", n_events=1_500, delay=100),
    Case(4, 1, "shuffled", "live", n_events=1_500, window=500),
    Case(2, 1, "inline", "backlog", n_events=1_000),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_label_is_learned_once_whatever_the_partition_layout(case, kafka_broker, redis_server):
    result = run_case(case, kafka_broker, redis_server.url)
    check_case(result, kafka_broker, redis_server.url)
