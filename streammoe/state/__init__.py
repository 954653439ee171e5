"""Model state stores: memory, file (embedded default) and Redis (the daemon)."""
from .base import StateStore
from .codec import StateFormatError, pack_arrays, pack_json, state_digest, unpack_arrays, unpack_json
from .file import FileStore, MemoryStore

__all__ = [
    "StateStore", "FileStore", "MemoryStore", "StateFormatError",
    "pack_arrays", "unpack_arrays", "pack_json", "unpack_json", "state_digest",
]
