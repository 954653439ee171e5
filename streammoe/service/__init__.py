"""The streaming daemon (``streammoe serve``): Kafka in and out, model state in Redis.

Modules: :mod:`.schema` (wire format and the never-raising decoders), :mod:`.deadletter`
(dead-letter records and counters), :mod:`.settings` (pydantic-settings configuration).
"""
