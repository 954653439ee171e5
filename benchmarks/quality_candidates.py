"""Research candidates for the default model, measured by :mod:`benchmarks.quality` (``--models NAME``).

Why here and not in the package: these are prototypes that wrap or subclass :class:`DriftMoE`
without touching its kernels, so that each idea from issue 12 can be measured across every stream
before anyone compiles it.  A candidate that wins moves into the package as an opt-in option
(default behaviour bit-identical), then becomes the default.  Each entry builds a fresh model for a
seed; overrides (``NAME@key=value``) go to ``DriftMoE``.

* ``std``    router input standardisation: the router sees ``(x - mean) / sd`` with a running
  mean / variance (Chan's parallel update over each router window, before that window's Adam
  step; frozen inside a window, so the windowed path's batched forward pass stays valid).  Why:
  the router's first layer saturates on features of magnitude 1e5 (Agrawal's salary) and learns
  slowly on features of very different scales; the trees do not care about scale.
* ``reset``  per-expert drift detection as in ARF: an ADWIN per expert on its error over the events
  it learns (routed to it); when the error rises significantly and the expert has learned at least
  ``grace`` events, the expert's tree is replaced by a fresh one (its router output is kept).  The
  detector is fed after each window from the window kernel's per-expert predictions, so a
  replacement happens at the end of the router window in which the drift was signalled (the
  compiled path keeps running; a compiled version would act at the exact event).  ``detector``
  chooses ``adwin`` (default) or one of river's binary detectors ``ddm``, ``hddma``, ``fhddm``,
  ``eddm`` (cheaper to compile: a few running counters instead of ADWIN's bucket list).
* ``std+reset`` both.
* ``neural-std`` the ``driftmoe-neural`` preset (3 MoRA experts, router hidden 32, top-1) with the
  router's inputs standardised (the experts standardise their own inputs already).
* ``bag``    online bagging under the router, as in ARF / leveraging bagging: *every* expert learns
  every event ``k ~ Poisson(lam)`` times (its own generator), each expert sees a fixed random
  subspace of the features (``subspace``: a fraction, the others are held at 0 for that expert, so
  it never splits on them), and an ADWIN per expert on its error resets its tree when the error
  rises.  The router still picks the answering expert (``combine='top1'``) or weights the top-k
  (``'mixture'``).  Runs on the per-event path (a pool policy), so its speed here is not the
  compiled speed; its accuracy is what a compiled version would give.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from streammoe.model import DriftMoE


class StandardisedRouter:
    """Wraps an :class:`~streammoe.routers.mlp.MLPRouter`: inputs standardised with running moments."""

    def __init__(self, inner):
        self.inner = inner
        self.count = 0.0
        self.mean = np.zeros(inner.n_inputs)
        self.m2 = np.zeros(inner.n_inputs)

    def __getattr__(self, name):  # everything else (add_outputs, remove_output, to_state, ...) as is
        return getattr(self.inner, name)

    def add_inputs(self, k: int) -> None:
        self.inner.add_inputs(k)
        self.mean = np.concatenate([self.mean, np.zeros(k)])
        self.m2 = np.concatenate([self.m2, np.zeros(k)])

    def _z(self, X: np.ndarray) -> np.ndarray:
        if self.count < 2:
            return X
        sd = np.sqrt(self.m2 / (self.count - 1.0))
        return (X - self.mean) / np.where(sd > 0, sd, 1.0)

    def logits(self, X: np.ndarray) -> np.ndarray:
        return self.inner.logits(self._z(np.asarray(X, dtype=np.float64)))

    def _observe(self, X: np.ndarray) -> None:
        n_b = float(X.shape[0])
        if not n_b:
            return
        mean_b = X.mean(axis=0)
        m2_b = ((X - mean_b) ** 2).sum(axis=0)
        total = self.count + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / total)
        self.m2 = self.m2 + m2_b + delta ** 2 * (self.count * n_b / total)
        self.count = total

    def train_step(self, X: np.ndarray, M: np.ndarray, want_loss: bool = True) -> float:
        X = np.asarray(X, dtype=np.float64)
        self._observe(X)
        return self.inner.train_step(self._z(X), M, want_loss=want_loss)


class CandidateMoE(DriftMoE):
    """DriftMoE with the research options switched on (see the module docstring)."""

    def __init__(self, *args, standardise: bool = False, reset: dict | None = None, **kwargs):
        self.standardise = standardise
        self.reset = reset
        super().__init__(*args, **kwargs)

    def _get_params(self):  # the extra options are not DriftMoE's; keep river's params to DriftMoE's own
        params = super()._get_params()
        params.pop("standardise", None)
        params.pop("reset", None)
        return params

    def _reset(self) -> None:
        super()._reset()
        if getattr(self, "standardise", False):
            self._router = StandardisedRouter(self._router)
        opts = getattr(self, "reset", None)
        self._detectors = None
        if opts is not None:
            self._reset_opts = {"delta": 0.002, "grace": 300, **opts}
            self._detectors = []
            self._learned = []
            self.resets_ = 0

    # -- per-expert drift detection (window granularity) -------------------------------
    def _detector(self):
        from river import drift
        from river.drift import binary

        kind = self._reset_opts.get("detector", "adwin")
        if kind == "adwin":
            return drift.ADWIN(delta=self._reset_opts["delta"])
        return {"ddm": binary.DDM, "hddma": binary.HDDMA, "fhddm": binary.FHDDM, "eddm": binary.EDDM}[kind]()

    def _run_segment(self, xs, ys, want_proba=True, R=None):
        if self._detectors is None:
            return super()._run_segment(xs, ys, want_proba, R)
        pool, seen = self._pool, {}
        original = pool.run_window

        def capture(W, X, Y, top_k, combine, C):
            res = original(W, X, Y, top_k, combine, C)
            seen.update(W=W, Y=Y, res=res, k=top_k)
            return res

        pool.run_window = capture
        try:
            out = super()._run_segment(xs, ys, want_proba, R)
        finally:
            del pool.run_window
        if seen:
            self._feed(seen["W"], seen["Y"], seen["res"].expert_pred, seen["k"])
        return out

    def _feed(self, W: np.ndarray, Y: np.ndarray, expert_pred: np.ndarray, k: int) -> None:
        E = W.shape[1]
        while len(self._detectors) < E:
            self._detectors.append(self._detector())
            self._learned.append(0)
        k = min(k, E)
        order = np.argsort(-W, axis=1, kind="stable")[:, :k]
        grace = self._reset_opts["grace"]
        drifted = set()
        for i in np.flatnonzero(Y >= 0):
            y = Y[i]
            for e in order[i]:
                e = int(e)
                det = self._detectors[e]
                before = getattr(det, "estimation", None)
                det.update(float(expert_pred[i, e] != y) if before is not None else bool(expert_pred[i, e] != y))
                self._learned[e] += 1
                rose = before is None or det.estimation > before  # binary detectors signal rises only
                if det.drift_detected and self._learned[e] >= grace and rose:
                    drifted.add(e)
        for e in sorted(drifted):
            self._pool.trees.reset_tree(e)
            self._detectors[e] = self._detector()
            self._learned[e] = 0
            self.resets_ += 1
            self._dirty.add(f"expert/{e}")


class BaggingPolicy:
    """Pool policy of ``bag`` (see the module docstring): the hooks DriftMoE calls for a policy."""

    def __init__(self, n_experts: int, lam: float, delta: float, grace: int, seed: int):
        from river import drift

        self._adwin = lambda: drift.ADWIN(delta=delta)
        self.lam, self.grace = lam, grace
        self.rng = np.random.default_rng(seed)
        self.adwins = [self._adwin() for _ in range(n_experts)]
        self.learned = np.zeros(n_experts, dtype=np.int64)
        self.resets = 0

    def logit_bias(self):
        return 0.0

    def learners(self, model, w):
        k = self.rng.poisson(self.lam, size=len(w)) if self.lam > 0 else np.ones(len(w), dtype=np.int64)
        return [e for e in range(len(w)) for _ in range(int(k[e]))]

    def after_learn(self, model, P, yi, learners):
        known = P.sum(axis=1) > 0
        wrong = ~(known & (np.argmax(P, axis=1) == yi))
        for e in set(learners):
            self.learned[e] += 1
            if not known[e]:
                continue
            det = self.adwins[e]
            before = det.estimation
            det.update(float(wrong[e]))
            if det.drift_detected and det.estimation > before and self.learned[e] >= self.grace:
                model._pool.reset(e)
                self.adwins[e] = self._adwin()
                self.learned[e] = 0
                self.resets += 1

    def to_state(self) -> bytes:  # size estimate only (ADWIN windows are small)
        return bytes(64 * len(self.adwins))


class SubspacePool:
    """An :class:`~streammoe.pools.ArrayTreePool` whose expert ``e`` sees only its feature subspace."""

    def __init__(self, inner, fraction: float | None, seed: int):
        self.inner, self.fraction = inner, fraction
        self.rng = np.random.default_rng(seed + 7919)
        self.masks: list[np.ndarray] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def windowed(self) -> bool:
        return False

    def _mask(self, e: int, d: int) -> np.ndarray:
        while len(self.masks) <= e:
            self.masks.append(np.zeros(0, dtype=bool))
        m = self.masks[e]
        if len(m) < d:  # new features: each is in the subspace with probability `fraction`
            extra = self.rng.random(d - len(m)) < (self.fraction or 1.0)
            m = self.masks[e] = np.concatenate([m, extra])
            if not m.any():
                m[self.rng.integers(d)] = True
        return m[:d]

    def _x(self, e: int, x: np.ndarray) -> np.ndarray:
        return x if not self.fraction else np.where(self._mask(e, x.shape[0]), x, 0.0)

    def predict(self, e, x, n_classes):
        return self.inner.predict(e, self._x(e, x), n_classes)

    def learn(self, e, x, y):
        self.inner.learn(e, self._x(e, x), y)

    def reset(self, e):
        self.inner.trees.reset_tree(e)


class BaggedMoE(DriftMoE):
    """DriftMoE whose pool is trained by :class:`BaggingPolicy` (see ``bag`` in the module docstring)."""

    def __init__(self, *args, lam: float = 1.0, subspace: float | None = 0.6, bag_delta: float = 0.002,
                 bag_grace: int = 300, **kwargs):
        self.lam, self.subspace, self.bag_delta, self.bag_grace = lam, subspace, bag_delta, bag_grace
        super().__init__(*args, **kwargs)

    def _get_params(self):
        params = super()._get_params()
        for k in ("lam", "subspace", "bag_delta", "bag_grace"):
            params.pop(k, None)
        return params

    def _reset(self) -> None:
        super()._reset()
        self._pool = SubspacePool(self._pool, self.subspace, self.seed)
        self._policy = BaggingPolicy(self._pool.n, self.lam, self.bag_delta, self.bag_grace, self.seed)


def _candidate(**fixed) -> Callable[..., Any]:
    def build(seed: int = 42, **overrides):
        return CandidateMoE(seed=seed, **{**fixed, **overrides})
    return build


CANDIDATES: dict[str, Callable[..., Any]] = {
    "std": _candidate(standardise=True),
    "reset": _candidate(reset={}),
    "std+reset": _candidate(standardise=True, reset={}),
    "reset-ddm": _candidate(reset={"detector": "ddm"}),
    "reset-hddma": _candidate(reset={"detector": "hddma"}),
    "std+reset-hddma": _candidate(standardise=True, reset={"detector": "hddma"}),
    "neural-std": _candidate(standardise=True, experts=[{"kind": "mora"}] * 3, top_k=1, hidden=32, engine="river"),
    "bag": lambda seed=42, **o: BaggedMoE(seed=seed, **o),
}
