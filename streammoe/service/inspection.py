"""``streammoe inspect``: what Redis holds for the daemon - models, experts, sizes, offsets,
pending labels, fencing epochs and the last checkpoint.

Read-only: it never claims an epoch or writes, so it is safe to run next to live daemons.
Blobs are only parsed as far as the JSON metadata (``meta`` part, ``daemon`` extra; for a
keyed pool also its ``stats`` arrays, for the per-key counts); the other arrays are counted in
bytes, not decoded.
"""
from __future__ import annotations

import json
import time
from typing import Any, Optional

from ..state.codec import unpack_arrays
from .keyed_pool import split_pool_parts
from .owner import DAEMON_EXTRA, GUARD_EXTRA, split_part

__all__ = ["inspect_store", "format_report"]


def _meta(blob: Optional[bytes]) -> dict:
    if blob is None:
        return {}
    try:
        return json.loads(blob)
    except ValueError:
        return {"error": "meta part is not JSON"}


def inspect_store(store: Any, names: Optional[list[str]] = None, now: Optional[float] = None) -> list[dict]:
    """One JSON-able dict per stored state hash (a partition, or a model saved with
    ``DriftMoE.save``): epoch, commits, last checkpoint, offsets, pending count, the daemon's
    counters, and per model (key) its size, experts and learned-event count."""
    now = time.time() if now is None else now
    out = []
    for name in (names if names is not None else store.names()):
        ck = store.load(name)
        pool, plain = split_pool_parts(ck.parts.items())
        models: dict[Optional[str], dict] = {}
        for pname, blob in plain.items():
            key, part = split_part(pname)
            models.setdefault(key, {})[part] = blob
        model_rows = []
        for key in sorted(models, key=lambda k: (k is not None, k or "")):
            parts = models[key]
            meta = _meta(parts.get("meta"))
            experts = sorted((p for p in parts if p.startswith("expert/")), key=lambda p: int(p.split("/")[1]))
            model_rows.append({
                "key": key, "bytes": sum(len(b) for b in parts.values()), "parts": len(parts),
                "n_learned": meta.get("n_learned"), "n_experts": meta.get("n_experts"),
                "classes": meta.get("classes"), "n_features": len(meta.get("features") or []),
                "experts": [{"part": p, "bytes": len(parts[p])} for p in experts],
            })
        if pool:
            model_rows += _pool_rows(pool)
        daemon = {}
        if DAEMON_EXTRA in ck.extra:
            try:
                daemon = json.loads(ck.extra[DAEMON_EXTRA])
            except ValueError:
                daemon = {"error": "daemon extra is not JSON"}
        out.append({
            "name": name, "epoch": ck.epoch, "commits": ck.commits,
            "last_checkpoint": ck.ts, "age_s": None if ck.ts is None else round(now - ck.ts, 3),
            "offsets": dict(sorted(ck.offsets.items())), "pending": store.pending_count(name),
            "bytes": sum(len(b) for b in ck.parts.values()), "models": model_rows,
            "guards": sorted(k[len(GUARD_EXTRA):] for k in ck.extra if k.startswith(GUARD_EXTRA)),
            "daemon": daemon,
        })
    return out


def _pool_rows(parts: dict[str, bytes]) -> list[dict]:
    """One row per key of a keyed pool (``serve.keyed_engine = "pool"``): its router's bytes and
    learned count; the trees of all keys share one part, shown as the pool's ``trees`` expert."""
    try:
        index, meta = json.loads(parts["index"]), json.loads(parts["meta"])
        stats = unpack_arrays(parts["stats"])
        keys, params = list(index["keys"]), meta["params"]
    except (KeyError, ValueError, TypeError) as exc:
        return [{"key": None, "error": f"keyed pool parts unreadable: {exc!r}", "bytes": 0, "parts": len(parts),
                 "n_learned": None, "n_experts": None, "classes": None, "n_features": 0, "experts": []}]
    shared = [{"part": "pool/" + p, "bytes": len(parts[p])} for p in ("trees", "window", "stats") if p in parts]
    rows = []
    for k, key in enumerate(keys):
        router = parts.get(f"router/{k}", b"")
        rows.append({"key": key, "bytes": len(router), "parts": 1, "n_learned": int(stats["n_learned"][k]),
                     "n_experts": params.get("n_experts"), "classes": index.get("labels"),
                     "n_features": len(index.get("features") or []), "pool": True,
                     "experts": [{"part": f"pool/router/{k}", "bytes": len(router)}] + shared})
    return sorted(rows, key=lambda r: r["key"])


def _size(n: Optional[int]) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def format_report(rows: list[dict], experts: bool = False) -> list[str]:
    """Readable lines for :func:`inspect_store`'s rows (the CLI prints them)."""
    if not rows:
        return ["no models stored under this prefix"]
    lines = []
    for r in rows:
        age = "never" if r["age_s"] is None else f"{r['age_s']:.1f} s ago"
        lines.append(f"{r['name']}: epoch {r['epoch']}, {r['commits']} commits, last checkpoint {age}, "
                     f"{_size(r['bytes'])}, {r['pending']} pending labels")
        if r["offsets"]:
            lines.append("  offsets: " + ", ".join(f"{tp}={off}" for tp, off in r["offsets"].items()))
        stats = r["daemon"].get("stats") if isinstance(r["daemon"], dict) else None
        if stats:
            dead = ", ".join(f"{k} {v}" for k, v in sorted(stats.get("dead", {}).items())) or "none"
            acc = f"{stats['correct'] / stats['scored']:.4f}" if stats.get("scored") else "-"
            lines.append(f"  events {stats.get('events', 0)}, labels {stats.get('labels', 0)}, learned "
                         f"{stats.get('learned', 0)}, accuracy {acc}, dead letters: {dead}")
        for m in r["models"]:
            who = "model" if m["key"] is None else f"key {m['key']!r}"
            lines.append(f"  {who}: {m['n_experts']} experts, {m['n_learned']} learned, "
                         f"{m['n_features']} features, classes {m['classes']}, {_size(m['bytes'])}")
            if experts:
                lines.append("    " + ", ".join(f"{e['part']} {_size(e['bytes'])}" for e in m["experts"]))
    return lines
