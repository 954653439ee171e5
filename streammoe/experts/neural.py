"""Neural experts: a small online MLP base with LoRA adapters, and MoRA-style rank-1 mixtures.

One class, :class:`AdapterMixtureExpert`, covers both families because they differ only in how
finely the adapter is cut (SMoRA's observation: routing between several LoRA adapters equals
partitioning one LoRA's ranks into blocks and activating whole blocks):

* the **base** is an MLP ``x -> standardise -> hidden (ReLU) -> class logits``;
* the **adapter** is a low-rank update of the output layer, ``logits += sum_i (a_i . h) b_i``
  over rank-1 components ``(a_i, b_i)`` grouped into *units* of ``block`` ranks.  A unit is one
  expert of the mixture: ``block=1`` gives MoRA (every rank its own expert), ``block=r`` gives a
  LoRA adapter of rank ``r`` per unit;
* **gating** is self-activation: a unit's relevance for an event is the size of its own
  down-projection ``||A_unit h||`` on the base's hidden state ``h`` (no gating network); the
  ``top_k`` most activated units are used, the rest contribute nothing and receive no gradient;
* **continual behaviour**: the expert keeps an ADWIN on its own prequential error.  When the
  error rises (drift), every trainable unit is frozen (it remembers the old concept and can be
  activated again when that concept recurs) and ``grow`` fresh units are added.  ``max_units``
  bounds the adapter: the least-used frozen units are pruned first.  Trainable units that stay
  idle (activation rate below ``idle`` over ``idle_window`` events) are pruned too;
* **base**: ``base='online'`` trains the base with the adapter on every micro-batch;
  ``base='frozen'`` trains it for ``warmup`` events, then freezes it (and the input
  standardiser) so that frozen units keep their meaning.  ``benchmarks/neural_base.py``
  measures both; the registered defaults follow that measurement.

Speed: the per-event forward pass is one compiled (Numba) call on the NumPy master weights
(:mod:`.neural_kernels`), and the last forward is cached, so the model's ``predict_one`` followed
by ``learn_one`` on the same event costs one forward. Learning buffers events and takes one Adam
step per ``batch`` events; the
backward pass of that step uses torch autograd on zero-copy views of the NumPy weights, and the
Adam update (per-row for the adapter, so frozen and inactive ranks never move) is applied in
NumPy.  Prequential order holds: an event is predicted with the weights of the last step, before
it is buffered.  Nothing here draws random numbers from torch, so results depend only on the
seed (``numpy.random.PCG64``), and the state serialises to plain arrays (no pickle).
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from river import drift

from ..state.codec import StateFormatError, pack_arrays, unpack_arrays
from .neural_kernels import forward_rows, observe, softmax_row
from .registry import register

_PARAMS = ("W1", "b1", "Wo", "bo", "A", "B")
_BASE = ("W1", "b1", "Wo", "bo")
_BASES = ("online", "frozen")
#: z-scored inputs are clipped to +-this so one outlier cannot blow up the hidden layer
_CLIP = 5.0
_BETAS = (0.9, 0.999)
_EPS = 1e-8

#: options every neural spec accepts, with their defaults (MoRA flavour)
DEFAULTS: dict[str, Any] = {
    "hidden": 32, "block": 1, "units": 8, "top_k": 2, "max_units": 16, "grow": 2, "batch": 16,
    "lr": 0.01, "base": "online", "warmup": 1000, "drift_delta": 0.002, "idle": 0.01,
    "idle_window": 5000,
}
#: LoRA flavour: one rank-4 adapter per unit, one adapter active; a drift freezes it and adds one
LORA_DEFAULTS: dict[str, Any] = dict(DEFAULTS, block=4, units=1, top_k=1, max_units=4, grow=1)


def _check_options(o: dict) -> None:
    ints = ("hidden", "block", "top_k", "max_units", "batch", "idle_window")
    for name in ints:
        if not isinstance(o[name], int) or isinstance(o[name], bool) or o[name] < 1:
            raise ValueError(f"neural expert option {name!r} must be an int >= 1, got {o[name]!r}")
    for name in ("units", "grow", "warmup"):
        if not isinstance(o[name], int) or isinstance(o[name], bool) or o[name] < 0:
            raise ValueError(f"neural expert option {name!r} must be an int >= 0, got {o[name]!r}")
    if o["units"] > o["max_units"] or o["grow"] > o["max_units"]:
        raise ValueError(f"units ({o['units']}) and grow ({o['grow']}) must not exceed max_units ({o['max_units']})")
    if o["base"] not in _BASES:
        raise ValueError(f"neural expert option 'base' must be one of {_BASES}, got {o['base']!r}")
    for name in ("lr", "drift_delta", "idle"):
        v = o[name]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v) or v < 0:
            raise ValueError(f"neural expert option {name!r} must be a finite number >= 0, got {v!r}")
    if not 0 < o["drift_delta"] < 1:
        raise ValueError(f"drift_delta must be in (0, 1), got {o['drift_delta']!r}")


def _rng_state(rng: np.random.Generator) -> np.ndarray:
    st = rng.bit_generator.state["state"]
    return np.frombuffer(f"{st['state']}:{st['inc']}".encode(), dtype=np.uint8)


def _rng_from(arr: np.ndarray) -> np.random.Generator:
    state, inc = bytes(arr).decode().split(":")
    rng = np.random.Generator(np.random.PCG64())
    st = rng.bit_generator.state
    st["state"] = {"state": int(state), "inc": int(inc)}
    st["has_uint32"], st["uinteger"] = 0, 0
    rng.bit_generator.state = st
    return rng


class AdapterMixtureExpert:
    """Online MLP base + a gated mixture of low-rank adapter units (see the module docstring)."""

    kind = "mora"
    defaults = DEFAULTS

    def __init__(self, seed: int = 0, binary: bool = False, **options: Any):
        unknown = set(options) - set(self.defaults)
        if unknown:
            raise ValueError(f"unknown {self.kind} expert option(s) {sorted(unknown)}; known: {sorted(self.defaults)}")
        o = dict(self.defaults)
        o.update(options)
        _check_options(o)
        self.options = o
        self.binary = bool(binary)
        self.rng = np.random.Generator(np.random.PCG64(int(seed)))
        H, R = o["hidden"], o["units"] * o["block"]
        self.p: dict[str, np.ndarray] = {
            "W1": np.zeros((H, 0)), "b1": np.zeros(H), "Wo": np.zeros((0, H)), "bo": np.zeros(0),
            "A": self._new_down(R), "B": np.zeros((R, 0)),
        }
        self.m = {k: np.zeros_like(v) for k, v in self.p.items()}
        self.v = {k: np.zeros_like(v) for k, v in self.p.items()}
        self.base_steps = 0
        self.rank_steps = np.zeros(R, dtype=np.int64)
        U = o["units"]
        self.unit_frozen = np.zeros(U, dtype=bool)
        self.unit_usage = np.zeros(U)
        self.unit_age = np.zeros(U, dtype=np.int64)
        self.unit_born = np.zeros(U, dtype=np.int64)
        self.unit_id = np.arange(U, dtype=np.int64)  # stable identity of a unit across pruning
        self.next_unit_id = U
        self.mean = np.zeros(0)
        self.m2 = np.zeros(0)
        self.count = np.zeros(0)
        self.inv_std = np.zeros(0)
        self.buf_x: list[np.ndarray] = []
        self.buf_y: list[int] = []
        self.adwin = drift.ADWIN(delta=o["drift_delta"])
        self.base_frozen = False
        self._frozen = False
        self.n_learned = 0
        self.n_steps = 0
        self.n_drifts = 0
        self.n_pruned = 0
        self.version = 0
        self._cache_key: bytes | None = None
        self._cache: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ shape
    @property
    def n_units(self) -> int:
        return int(self.unit_frozen.size)

    @property
    def n_ranks(self) -> int:
        return int(self.p["A"].shape[0])

    @property
    def n_features(self) -> int:
        return int(self.mean.size)

    @property
    def n_classes(self) -> int:
        return int(self.p["bo"].size)

    @property
    def frozen(self) -> bool:
        return self._frozen

    @frozen.setter
    def frozen(self, value: bool) -> None:
        """Freezing drops the not-yet-learned micro-batch: it most likely holds the new concept."""
        value = bool(value)
        if value and not self._frozen:
            self.buf_x.clear()
            self.buf_y.clear()
        self._frozen = value

    def _new_down(self, n_rows: int) -> np.ndarray:
        H = self.options["hidden"]
        return self.rng.normal(0.0, 1.0 / np.sqrt(H), size=(n_rows, H))

    def _grow_features(self, d_new: int) -> None:
        k = d_new - self.n_features
        H = self.options["hidden"]
        if self.base_frozen:
            cols = np.zeros((H, k))  # a frozen base cannot learn to use a new feature: ignore it
        else:
            bound = np.sqrt(6.0 / (d_new + H))
            cols = self.rng.uniform(-bound, bound, size=(H, k))
        self.p["W1"] = np.ascontiguousarray(np.concatenate([self.p["W1"], cols], axis=1))
        for buf in (self.m, self.v):
            buf["W1"] = np.ascontiguousarray(np.concatenate([buf["W1"], np.zeros((H, k))], axis=1))
        self.mean = np.concatenate([self.mean, np.zeros(k)])
        self.m2 = np.concatenate([self.m2, np.zeros(k)])
        self.count = np.concatenate([self.count, np.zeros(k)])
        self.inv_std = np.concatenate([self.inv_std, np.ones(k)])

    def _grow_classes(self, c_new: int) -> None:
        k = c_new - self.n_classes
        H = self.options["hidden"]
        if self.n_classes == 0 or not self.base_frozen:
            bound = np.sqrt(6.0 / (H + c_new))
            rows = self.rng.uniform(-bound, bound, size=(k, H))
        else:
            rows = np.zeros((k, H))
        self.p["Wo"] = np.concatenate([self.p["Wo"], rows], axis=0)
        self.p["bo"] = np.concatenate([self.p["bo"], np.zeros(k)])
        self.p["B"] = np.concatenate([self.p["B"], np.zeros((self.n_ranks, k))], axis=1)
        for buf in (self.m, self.v):
            buf["Wo"] = np.concatenate([buf["Wo"], np.zeros((k, H))], axis=0)
            buf["bo"] = np.concatenate([buf["bo"], np.zeros(k)])
            buf["B"] = np.concatenate([buf["B"], np.zeros((self.n_ranks, k))], axis=1)

    # ------------------------------------------------------------------ forward
    def _forward(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits (n, C) and the active-unit mask (n, units) for rows ``X`` (n, n_features).

        One compiled kernel serves single events and micro-batches, so the gate of an event is
        the same whether it is predicted or trained on (see :mod:`.neural_kernels` for the rule).
        """
        n = X.shape[0]
        logits = np.empty((n, self.n_classes))
        mask = np.zeros((n, self.n_units), dtype=np.bool_)
        p = self.p
        forward_rows(np.ascontiguousarray(X), self.mean, self.inv_std, _CLIP, p["W1"], p["b1"], p["Wo"], p["bo"],
                     p["A"], p["B"], self.unit_frozen, self.options["top_k"], self.options["block"], logits, mask)
        return logits, mask

    def _vector(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 1:
            raise ValueError(f"x must be a 1-D feature vector, got shape {x.shape}")
        if x.size < self.n_features:
            raise ValueError(f"x has {x.size} features but this expert has seen {self.n_features}; "
                             "vectors may only grow")
        if not np.isfinite(x).all():
            raise ValueError(f"x has non-finite values at positions {np.flatnonzero(~np.isfinite(x)).tolist()}")
        return x

    def _predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities over the known classes and the active units, cached per (x, version)."""
        key = x.tobytes() + self.version.to_bytes(8, "little")
        if key == self._cache_key:
            return self._cache
        logits, mask = self._forward(x[None, : self.n_features])
        proba = np.empty(self.n_classes)
        softmax_row(logits[0], proba)
        out = (proba, mask[0])
        self._cache_key, self._cache = key, out
        return out

    def predict_proba(self, x: np.ndarray, n_classes: int) -> np.ndarray:
        x = self._vector(x)
        out = np.zeros(n_classes)
        if self.n_steps == 0:
            return out  # nothing learned yet: say so instead of guessing
        if n_classes < self.n_classes:
            raise ValueError(f"expert knows {self.n_classes} classes but only n_classes={n_classes} were asked for")
        out[: self.n_classes] = self._predict(x)[0]
        return out

    def active_units(self, x: np.ndarray) -> list[int]:
        """Indices of the units the gate activates for ``x`` (at most ``top_k``)."""
        x = self._vector(x)
        if self.n_classes == 0:
            return []
        return np.flatnonzero(self._predict(x)[1]).tolist()

    # ------------------------------------------------------------------ learning
    def learn(self, x: np.ndarray, y: int) -> None:
        if self._frozen:
            return
        x = self._vector(x)
        if isinstance(y, (bool, np.bool_)) or not isinstance(y, (int, np.integer)) or y < 0:
            raise ValueError(f"y must be a class index (int >= 0), got {y!r}")
        y = int(y)
        drifted = False
        if self.n_steps > 0 and y < self.n_classes:
            proba, active = self._predict(x)
            before = self.adwin.estimation
            self.adwin.update(float(np.argmax(proba) != y))
            drifted = self.adwin.drift_detected and self.adwin.estimation > before
            if self.n_units:
                a = 1.0 / self.options["idle_window"]
                self.unit_usage *= 1.0 - a
                self.unit_usage[active] += a
        if x.size > self.n_features:
            self._grow_features(x.size)
        if y >= self.n_classes:
            self._grow_classes(y + 1)
        if not self.base_frozen:
            self._observe(x)
        self.unit_age += 1
        self.buf_x.append(x.copy())
        self.buf_y.append(y)
        self.n_learned += 1
        if len(self.buf_y) >= self.options["batch"]:
            self._step()
        if drifted:
            self._on_drift()
        self.version += 1

    def _observe(self, x: np.ndarray) -> None:
        """Welford update of the per-feature standardiser."""
        observe(x, self.mean, self.m2, self.count, self.inv_std)

    def _step(self) -> None:
        """One Adam step on the buffered micro-batch (torch autograd for the gradients).

        torch runs single-threaded here: these matrices are tiny, and on a busy machine torch's
        worker threads cost 10x more waiting for a core than they save (measured: 1-3k vs 12-17k
        events/s with two threads on two loaded cores).  The caller's thread setting is restored.
        """
        threads = torch.get_num_threads()
        if threads != 1:
            torch.set_num_threads(1)
        try:
            self._step_inner()
        finally:
            if threads != 1:
                torch.set_num_threads(threads)

    def _step_inner(self) -> None:
        d = self.n_features
        X = np.zeros((len(self.buf_x), d))
        for i, row in enumerate(self.buf_x):
            X[i, : min(d, row.size)] = row[:d]
        y = np.asarray(self.buf_y, dtype=np.int64)
        self.buf_x.clear()
        self.buf_y.clear()
        _, mask = self._forward(X)
        train_base = not self.base_frozen
        names = [k for k in _PARAMS if (k in _BASE and train_base) or (k not in _BASE and self.n_ranks)]
        if not names:
            return
        t = {k: torch.from_numpy(self.p[k]).requires_grad_(k in names) for k in _PARAMS}
        Z = (X - self.mean) * self.inv_std
        np.clip(Z, -_CLIP, _CLIP, out=Z)
        h = torch.relu(torch.from_numpy(Z) @ t["W1"].T + t["b1"])
        logits = h @ t["Wo"].T + t["bo"]
        rank_mask = np.repeat(mask, self.options["block"], axis=1)
        if self.n_ranks:
            s = (h @ t["A"].T) * torch.from_numpy(rank_mask.astype(np.float64))
            logits = logits + s @ t["B"]
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y))
        grads = torch.autograd.grad(loss, [t[k] for k in names])
        g = {k: gr.numpy() for k, gr in zip(names, grads)}
        lr = float(self.options["lr"])
        if train_base:
            self.base_steps += 1
            for k in _BASE:
                _adam(self.p[k], self.m[k], self.v[k], g[k], self.base_steps, lr)
        if self.n_ranks:
            rows = np.flatnonzero(rank_mask.any(axis=0) & ~np.repeat(self.unit_frozen, self.options["block"]))
            if rows.size:
                self.rank_steps[rows] += 1
                steps = self.rank_steps[rows][:, None]
                for k in ("A", "B"):
                    p, m, v = self.p[k][rows], self.m[k][rows], self.v[k][rows]
                    _adam(p, m, v, g[k][rows], steps, lr)
                    self.p[k][rows], self.m[k][rows], self.v[k][rows] = p, m, v
        self.n_steps += 1
        if self.options["base"] == "frozen" and not self.base_frozen and self.n_learned >= self.options["warmup"]:
            self.base_frozen = True
        self._prune_idle()

    # ------------------------------------------------------------------ continual adapter
    def _on_drift(self) -> None:
        """Freeze the trainable units (they keep the old concept) and grow fresh ones."""
        self.n_drifts += 1
        grow = self.options["grow"]
        if grow == 0:
            return
        self.unit_frozen[:] = True
        while self.n_units + grow > self.options["max_units"]:
            self._remove_unit(self._least_used(frozen_only=True))
        self._add_units(grow)

    def _least_used(self, frozen_only: bool) -> int:
        usage = np.where(self.unit_frozen | (not frozen_only), self.unit_usage, np.inf)
        return int(np.argmin(usage))

    def _add_units(self, k: int) -> None:
        block = self.options["block"]
        A = self._new_down(k * block)
        if self.n_ranks:  # match the activation scale of the trained units so new ones get picked
            A *= np.linalg.norm(self.p["A"], axis=1).mean() / np.linalg.norm(A, axis=1).mean()
        C = self.n_classes
        self.p["A"] = np.concatenate([self.p["A"], A])
        self.p["B"] = np.concatenate([self.p["B"], np.zeros((k * block, C))])
        for buf in (self.m, self.v):
            buf["A"] = np.concatenate([buf["A"], np.zeros_like(A)])
            buf["B"] = np.concatenate([buf["B"], np.zeros((k * block, C))])
        self.rank_steps = np.concatenate([self.rank_steps, np.zeros(k * block, dtype=np.int64)])
        self.unit_frozen = np.concatenate([self.unit_frozen, np.zeros(k, dtype=bool)])
        # a new unit starts at the activation rate it would have if the gate picked units uniformly
        self.unit_usage = np.concatenate([self.unit_usage, np.full(k, min(1.0, self.options["top_k"] / self.n_units))])
        self.unit_age = np.concatenate([self.unit_age, np.zeros(k, dtype=np.int64)])
        self.unit_born = np.concatenate([self.unit_born, np.full(k, self.n_learned, dtype=np.int64)])
        self.unit_id = np.concatenate([self.unit_id, np.arange(self.next_unit_id, self.next_unit_id + k)])
        self.next_unit_id += k

    def _remove_unit(self, u: int) -> None:
        block = self.options["block"]
        rows = np.arange(u * block, (u + 1) * block)
        for buf in (self.p, self.m, self.v):
            buf["A"] = np.delete(buf["A"], rows, axis=0)
            buf["B"] = np.delete(buf["B"], rows, axis=0)
        self.rank_steps = np.delete(self.rank_steps, rows)
        for name in ("unit_frozen", "unit_usage", "unit_age", "unit_born", "unit_id"):
            setattr(self, name, np.delete(getattr(self, name), u))
        self.n_pruned += 1

    def _prune_idle(self) -> None:
        """Drop trainable units the gate has not used for a long time (frozen ones wait for recurrence)."""
        o = self.options
        while self.n_units > o["top_k"]:
            idle = ~self.unit_frozen & (self.unit_age >= o["idle_window"]) & (self.unit_usage < o["idle"])
            if not idle.any() or (~self.unit_frozen).sum() <= 1:
                return
            self._remove_unit(int(np.flatnonzero(idle)[0]))

    # ------------------------------------------------------------------ state
    def to_state(self) -> bytes:
        arrays: dict[str, np.ndarray] = {f"p_{k}": v for k, v in self.p.items()}
        arrays.update({f"m_{k}": v for k, v in self.m.items()})
        arrays.update({f"v_{k}": v for k, v in self.v.items()})
        d = self.n_features
        bx = np.zeros((len(self.buf_x), d))
        for i, row in enumerate(self.buf_x):
            bx[i, : row.size] = row[:d]
        header = {"kind": self.kind, "options": self.options, "binary": self.binary,
                  "base_frozen": self.base_frozen, "frozen": self._frozen,
                  "buffer_widths": [int(r.size) for r in self.buf_x]}
        arrays.update({
            "header": np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8),
            "counters": np.array([self.base_steps, self.n_learned, self.n_steps, self.n_drifts, self.n_pruned,
                                  self.version, self.next_unit_id], dtype=np.int64),
            "rank_steps": self.rank_steps, "unit_frozen": self.unit_frozen, "unit_usage": self.unit_usage,
            "unit_age": self.unit_age, "unit_born": self.unit_born, "unit_id": self.unit_id,
            "mean": self.mean, "m2": self.m2,
            "count": self.count, "inv_std": self.inv_std, "buf_x": bx,
            "buf_y": np.asarray(self.buf_y, dtype=np.int64), "rng": _rng_state(self.rng),
        })
        from ..adaptive import adwin_arrays

        arrays.update(adwin_arrays(self.adwin, "adwin_"))
        return pack_arrays(arrays)

    @classmethod
    def from_state(cls, blob: bytes) -> "AdapterMixtureExpert":
        from ..adaptive import adwin_from_arrays

        a = unpack_arrays(blob)
        try:
            header = json.loads(bytes(a["header"]).decode())
            if header["kind"] != cls.kind:
                raise StateFormatError(f"state is a {header['kind']!r} expert, not {cls.kind!r}")
            self = cls(seed=0, binary=header["binary"], **header["options"])
            self.p = {k: a[f"p_{k}"].copy() for k in _PARAMS}
            self.m = {k: a[f"m_{k}"].copy() for k in _PARAMS}
            self.v = {k: a[f"v_{k}"].copy() for k in _PARAMS}
            (self.base_steps, self.n_learned, self.n_steps, self.n_drifts, self.n_pruned,
             self.version, self.next_unit_id) = (int(c) for c in a["counters"])
            for name in ("rank_steps", "unit_frozen", "unit_usage", "unit_age", "unit_born", "unit_id", "mean",
                         "m2", "count", "inv_std"):
                setattr(self, name, a[name].copy())
            self.buf_x = [a["buf_x"][i, :w].copy() for i, w in enumerate(header["buffer_widths"])]
            self.buf_y = [int(v) for v in a["buf_y"]]
            self.rng = _rng_from(a["rng"])
            self.adwin = adwin_from_arrays(a, "adwin_")
            self.base_frozen = bool(header["base_frozen"])
            self._frozen = bool(header["frozen"])
        except (KeyError, ValueError, TypeError) as exc:
            if isinstance(exc, StateFormatError):
                raise
            raise StateFormatError(f"not a valid {cls.kind} expert state: {exc}") from exc
        return self

    def nbytes(self) -> int:
        """Memory held by weights, optimiser moments and the buffer (bounded by the unit budget)."""
        total = sum(v.nbytes for buf in (self.p, self.m, self.v) for v in buf.values())
        return total + sum(r.nbytes for r in self.buf_x)

    def describe(self) -> dict:
        return {"kind": self.kind, "units": self.n_units, "ranks": self.n_ranks,
                "frozen_units": int(self.unit_frozen.sum()), "drifts": self.n_drifts, "pruned": self.n_pruned,
                "base_frozen": self.base_frozen, "steps": self.n_steps}


class LoRAExpert(AdapterMixtureExpert):
    """LoRA flavour: units are rank-``block`` adapters (default one rank-4 adapter active at a time)."""

    kind = "lora"
    defaults = LORA_DEFAULTS


def _adam(p: np.ndarray, m: np.ndarray, v: np.ndarray, g: np.ndarray, t, lr: float) -> None:
    """In-place Adam update (torch's rule, bias-corrected; ``t`` may be per-row steps)."""
    b1, b2 = _BETAS
    m *= b1
    m += (1.0 - b1) * g
    v *= b2
    v += (1.0 - b2) * g * g
    c1 = 1.0 - b1 ** t
    c2 = 1.0 - b2 ** t
    p -= lr * (m / c1) / (np.sqrt(v / c2) + _EPS)


def _make(cls: type):
    def maker(seed: int, grace_period: int, delta: float, binary: bool, **options) -> AdapterMixtureExpert:
        # grace_period / delta are the pool's tree parameters; neural experts have their own options
        return cls(seed=seed, binary=binary, **options)

    return maker


register("mora", _make(AdapterMixtureExpert), AdapterMixtureExpert)
register("lora", _make(LoRAExpert), LoRAExpert)
