"""Settings of the daemon's processing itself (section ``[serve]`` / ``STREAMMOE_SERVE__*``).

Why a section of its own: the other sections say *where* things are (Kafka, Redis, HTTP) and
*how much* is allowed (limits, checkpoint policy); this one says how events are turned into
models - one model per partition or per event key, how strictly an event's features and
label are checked against the model, and how long the daemon waits for the labels topic to
catch up before it processes events out of event-time order.
"""
from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

__all__ = ["ServeSettings"]


class ServeSettings(BaseModel):
    """How the daemon maps events to models and checks them."""

    model_config = ConfigDict(extra="forbid")

    model_per: Literal["partition", "key"] = Field(
        "partition", description="one model per input partition, or one per event 'key' within a partition")
    keyed_engine: Literal["pool", "models"] = Field(
        "pool", description="with model_per = 'key': 'pool' runs the partition's keys as one KeyedDriftMoE "
                            "(batched; data-mode tree experts only, strict features; key i is seeded "
                            "model.params.seed + i); 'models' keeps one DriftMoE per key (any model.params)")
    max_keys_per_partition: int = Field(
        10_000, gt=0, description="keyed models one partition may hold; events of further keys are "
                                  "dead-lettered (too_many_keys) so a key flood cannot exhaust memory")
    feature_policy: Literal["strict", "open"] = Field(
        "strict", description="strict: an event must carry exactly the model's features (else "
                              "wrong_features); open: missing features are imputed, new ones added")
    classes: Optional[list[Union[StrictBool, StrictInt, StrictStr]]] = Field(
        None, description="accepted labels; others are dead-lettered (unknown_label).  Unset: any "
                          "label whose type (int / str / bool) matches the model's labels")
    align_idle_ms: int = Field(
        500, ge=0, description="poll time (time spent waiting for records, not processing) events wait for "
                               "a labels partition that is behind, and labels stamped after every event read "
                               "wait for a caught-up input partition, before going anyway; a label never goes "
                               "while its input partition is behind (see service.align)")
    align_max_wait_ms: int = Field(
        30_000, gt=0, description="poll time events wait for a labels partition that is behind (or not fetched "
                                  "yet), and labels for an input partition that is behind, before going anyway; "
                                  "a safety valve for a partition the broker does not serve (see service.align)")
    poll_timeout_ms: int = Field(200, gt=0, description="longest wait of one consumer poll")
    fetch_max_wait_ms: int = Field(
        20, gt=0, description="longest time the broker may hold a fetch while it has no new data; "
                              "kafka-python's 500 ms default put p50 latency above 100 ms here, 20 ms "
                              "brought it to about 10 ms")
    max_queued_records: int = Field(
        20_000, gt=0, description="records of one partition held in memory while it waits for the other "
                                  "topic; beyond that they are dropped and fetched again later")
    producer_process: bool = Field(
        True, description="produce predictions and dead letters from a child process, so kafka-python's "
                          "per-record work runs on another core (false: in the daemon's process)")
    check_crcs: bool = Field(
        True, description="verify the CRC32C of fetched record batches; kafka-python computes it in pure "
                          "Python unless the 'crc32c' package is installed, which costs ~15 us per event")
    commit_kafka_offsets: bool = Field(
        True, description="also commit processed offsets to Kafka (for lag tools; Redis stays the "
                          "source of truth)")
    metrics_interval_s: float = Field(1.0, gt=0, description="how often gauges are refreshed")
    blas_threads: Optional[int] = Field(
        1, gt=0, description="BLAS threads for the model's matrix products while serving (via threadpoolctl); "
                             "the router's matrices are small, and a multi-threaded BLAS competing with "
                             "the Kafka client threads made it 10x slower here.  Unset: library default")

    @field_validator("classes")
    @classmethod
    def _classes(cls, v: Optional[list]) -> Optional[list]:
        if v is None:
            return v
        if not v:
            raise ValueError("classes is empty; leave it unset to accept any label")
        seen = set()
        for label in v:
            tagged = (type(label), label)
            if tagged in seen:
                raise ValueError(f"label {label!r} is listed twice in classes")
            seen.add(tagged)
        return v
