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
  compiled path keeps running; a compiled version would act at the exact event).
* ``std+reset`` both.
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

        return drift.ADWIN(delta=self._reset_opts["delta"])

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
                before = det.estimation
                det.update(float(expert_pred[i, e] != y))
                self._learned[e] += 1
                if det.drift_detected and self._learned[e] >= grace and det.estimation > before:
                    drifted.add(e)
        for e in sorted(drifted):
            self._pool.trees.reset_tree(e)
            self._detectors[e] = self._detector()
            self._learned[e] = 0
            self.resets_ += 1
            self._dirty.add(f"expert/{e}")


def _candidate(**fixed) -> Callable[..., Any]:
    def build(seed: int = 42, **overrides):
        return CandidateMoE(seed=seed, **{**fixed, **overrides})
    return build


CANDIDATES: dict[str, Callable[..., Any]] = {
    "std": _candidate(standardise=True),
    "reset": _candidate(reset={}),
    "std+reset": _candidate(standardise=True, reset={}),
}
