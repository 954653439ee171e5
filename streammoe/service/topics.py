"""Create the Kafka topics a deployment or a test needs, leaving existing ones alone.

Why one helper: ``streammoe generate --create-topics`` and the test fixtures both create
topics; they share this so that both skip topics that exist, tolerate a topic created
concurrently by someone else, and pass the same connection and security arguments
(``KafkaSettings.common_kwargs()``: SASL, SSL) to the admin client.
"""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["create_missing_topics"]


def create_missing_topics(wanted: Mapping[str, int], **client_kwargs: Any) -> None:
    """Create every topic of ``wanted`` (``{name: n_partitions}``, replication factor 1) that
    the broker does not list yet.  ``client_kwargs`` go to ``KafkaAdminClient`` (at least
    ``bootstrap_servers``; security arguments as needed)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(**client_kwargs)
    try:
        existing = set(admin.list_topics())
        for name, n in wanted.items():
            if name not in existing:
                try:
                    admin.create_topics([NewTopic(name, num_partitions=n, replication_factor=1)])
                except TopicAlreadyExistsError:  # created meanwhile by another client
                    pass
    finally:
        admin.close()
