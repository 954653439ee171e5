"""Byte encodings for model state that never execute code on load.

Arrays travel as ``.npz`` archives read back with ``allow_pickle=False``; metadata
travels as JSON.  Every part of a model (router, each expert, model metadata) is one
``bytes`` blob, so stores can write only the parts that changed.
"""
from __future__ import annotations

import hashlib
import hmac
import io
import json
from typing import Any, Mapping

import numpy as np


class StateFormatError(ValueError):
    """A stored blob is not a valid streammoe state part (corrupt, tampered or foreign)."""


def pack_arrays(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Encode named arrays as an uncompressed ``.npz`` archive (object arrays are refused)."""
    for name, arr in arrays.items():
        if np.asarray(arr).dtype == object:
            raise TypeError(f"array {name!r} has dtype object; only plain numeric arrays are stored")
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def unpack_arrays(blob: bytes) -> dict[str, np.ndarray]:
    """Decode a blob made by :func:`pack_arrays`; pickled content is rejected."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as exc:  # zipfile/ValueError/OSError: all mean "not our format"
        raise StateFormatError(f"not a valid array blob: {exc}") from exc


def pack_json(obj: Any) -> bytes:
    """Encode metadata as canonical JSON (sorted keys) so equal states give equal bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def unpack_json(blob: bytes) -> Any:
    try:
        return json.loads(blob.decode())
    except Exception as exc:
        raise StateFormatError(f"not a valid JSON blob: {exc}") from exc


def sign(blob: bytes, key: bytes) -> bytes:
    """Prefix ``blob`` with an HMAC-SHA256 tag so tampering is detected on load."""
    return hmac.new(key, blob, hashlib.sha256).digest() + blob


def verify(signed: bytes, key: bytes) -> bytes:
    """Return the payload of a :func:`sign`-ed blob or raise :class:`StateFormatError`."""
    tag, blob = signed[:32], signed[32:]
    if len(signed) < 32 or not hmac.compare_digest(tag, hmac.new(key, blob, hashlib.sha256).digest()):
        raise StateFormatError("state blob failed its HMAC check (tampered, or signed with another key)")
    return blob


def state_digest(parts: Mapping[str, bytes]) -> str:
    """A SHA-256 over all parts in name order: equal digests mean bit-identical model state."""
    h = hashlib.sha256()
    for name in sorted(parts):
        h.update(name.encode() + b"\0" + hashlib.sha256(parts[name]).digest())
    return h.hexdigest()
