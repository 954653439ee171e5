"""Model state stores: memory, file (embedded default) and Redis (the daemon)."""
from .base import StateStore
from .codec import StateFormatError, pack_arrays, pack_json, state_digest, unpack_arrays, unpack_json
from .file import FileStore, MemoryStore


def __getattr__(name):  # RedisStore needs the redis client; import it only when asked for
    if name in ("RedisStore", "FencedError", "StoreUnavailableError", "StoreAuthError"):
        from . import redis_store

        return getattr(redis_store, name)
    raise AttributeError(name)


__all__ = ["RedisStore", "FencedError", "StoreUnavailableError", "StoreAuthError",
    "StateStore", "FileStore", "MemoryStore", "StateFormatError",
    "pack_arrays", "unpack_arrays", "pack_json", "unpack_json", "state_digest",
]
