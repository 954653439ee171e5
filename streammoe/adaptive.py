"""Drift-aware expert pool: freeze drifting experts, grow fresh ones, recall old ones, bound the pool.

What it guarantees: an ADWIN per expert on the error of the events it learns decides when an expert
is frozen (kept, still predicting) and a fresh one grown; the pool never exceeds ``budget`` experts
(the least useful frozen expert is pruned); a frozen expert whose concept returns is recalled;
every change is logged in ``model.drift_log`` (event index, action, expert, reason); the state
(every ADWIN included) is saved as plain arrays, without pickle, and a restored policy continues
exactly.  The rules and the measurements behind them are in ``docs/design-notes.md``.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
from river import drift

from .state.codec import StateFormatError, pack_arrays, unpack_arrays

#: what ``adaptive={...}`` accepts, with defaults
DEFAULTS: dict[str, Any] = {
    "budget": 24,        # most experts the pool may hold (frozen ones included)
    "delta": 0.002,      # ADWIN confidence
    "grace": 300,        # events an expert must have learned before its drift can be signalled
    "recent": 50,        # horizon (events) of the recent accuracy used for recall
    "memory": 5000,      # horizon (events) of the accuracy that decides which frozen expert to prune
    "bias": 16.0,        # logit bias of a frozen expert per unit of recent accuracy above the live ones
    "margin": 0.1,       # accuracy gap to the best expert that costs no bias
    "settle": 500,       # events after a detected drift during which live experts get the bias too
    "learn_all": [],     # expert kinds whose unfrozen experts learn every event (besides the top-k)
    "recall_horizon": 100,  # horizon (events) of a frozen expert's paired lead over the best live expert
    "recall_margin": 0.04,  # lead at which a frozen expert is recalled (it answers until a live one catches
                            # up); the lead never exceeds 1, so a margin >= 1 turns recall off
}

_ADWIN_FIELDS = frozenset({"_drift_detected", "delta", "clock", "max_buckets", "min_window_length",
                           "grace_period", "_helper"})
_ADWIN_PARAMS = ("delta", "clock", "max_buckets", "min_window_length", "grace_period")


# ---------------------------------------------------------------------- ADWIN <-> arrays
def adwin_arrays(adwin: drift.ADWIN, prefix: str) -> dict[str, np.ndarray]:
    """The complete state of a river ADWIN as named plain arrays (keys start with ``prefix``)."""
    got = set(vars(adwin))
    if got != _ADWIN_FIELDS:
        raise StateFormatError(f"unknown river ADWIN layout: unexpected {sorted(got - _ADWIN_FIELDS)}, "
                               f"missing {sorted(_ADWIN_FIELDS - got)}")
    return {
        prefix + "params": np.array([float(getattr(adwin, k)) for k in _ADWIN_PARAMS]),
        prefix + "flag": np.array([bool(adwin._drift_detected)]),
        prefix + "window": np.frombuffer(adwin._helper.__getstate__(), dtype=np.uint8),
    }


def adwin_from_arrays(arrays: dict[str, np.ndarray], prefix: str) -> drift.ADWIN:
    """Inverse of :func:`adwin_arrays`; raises ``StateFormatError`` if the window does not restore exactly."""
    try:
        delta, clock, max_buckets, min_len, grace = arrays[prefix + "params"].tolist()
        window = bytes(arrays[prefix + "window"])
        adwin = drift.ADWIN(delta=delta, clock=int(clock), max_buckets=int(max_buckets),
                            min_window_length=int(min_len), grace_period=int(grace))
        adwin._helper.__setstate__(window)
        adwin._drift_detected = bool(arrays[prefix + "flag"][0])
    except (KeyError, ValueError, TypeError) as exc:
        raise StateFormatError(f"not a valid ADWIN state ({prefix!r}): {exc}") from exc
    except BaseException as exc:  # river's Rust decoder panics (pyo3 PanicException) on truncated bytes
        if type(exc).__name__ != "PanicException":
            raise
        raise StateFormatError(f"not a valid ADWIN state ({prefix!r}): corrupt window bytes ({exc})") from None
    if adwin._helper.__getstate__() != window:
        raise StateFormatError(f"ADWIN state {prefix!r} did not restore exactly (river version mismatch?)")
    return adwin


# ---------------------------------------------------------------------- the policy
def _check(options: dict) -> dict:
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown adaptive option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    o = dict(DEFAULTS)
    o.update(options)
    for name in ("budget", "grace", "recent", "memory", "settle", "recall_horizon"):
        v = o[name]
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"adaptive option {name!r} must be an int >= 1, got {v!r}")
    if not isinstance(o["delta"], (int, float)) or not 0 < o["delta"] < 1:
        raise ValueError(f"adaptive option 'delta' must be in (0, 1), got {o['delta']!r}")
    for name in ("bias", "margin", "recall_margin"):
        v = o[name]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v) or v < 0:
            raise ValueError(f"adaptive option {name!r} must be a finite number >= 0, got {v!r}")
    if not isinstance(o["learn_all"], (list, tuple)) or not all(isinstance(k, str) for k in o["learn_all"]):
        raise ValueError(f"adaptive option 'learn_all' must be a list of expert kinds, got {o['learn_all']!r}")
    o["learn_all"] = list(o["learn_all"])
    return o


class DriftAwarePool:
    """The drift-aware pool policy (see the module docstring); per-expert arrays follow expert indices."""

    def __init__(self, options: dict, n_experts: int):
        self.options = _check(options)
        self.adwins = [self._adwin() for _ in range(n_experts)]
        self.learned = np.zeros(n_experts, dtype=np.int64)
        self.recent_acc = np.zeros(n_experts)
        self.memory_acc = np.zeros(n_experts)
        self.born = np.zeros(n_experts, dtype=np.int64)
        self.frozen = np.zeros(n_experts, dtype=bool)  # refreshed from the pool after every event
        self.n_drifts = 0
        self.events_since_drift = self.options["settle"]
        self.lead = np.zeros(n_experts)  # paired lead over the best live expert (see _update_lead)
        self.recalled = -1               # the frozen expert being recalled, or -1
        self._bias = np.zeros(n_experts)

    def _adwin(self) -> drift.ADWIN:
        return drift.ADWIN(delta=self.options["delta"])

    # -- hooks called by the model ---------------------------------------------------------
    def logit_bias(self) -> np.ndarray:
        """Added to the router's logits: pushes down experts far less accurate than the best one lately.

        Frozen experts always get it (they answer only while they are among the best: recall);
        live experts only during a drift phase, so that in stable times routing is the reference's.
        """
        return self._bias

    def _update_bias(self) -> None:
        acc, frozen, o = self.recent_acc, self.frozen, self.options
        if acc.size == 0:
            self._bias = acc.copy()
            return
        bias = -o["bias"] * np.maximum(0.0, acc.max() - acc - o["margin"])
        if self.recalled >= 0:  # a recurring concept: its frozen expert answers, the pool settles around it
            bias[self.recalled] = o["bias"]
            self._bias = bias
        elif self.events_since_drift < o["settle"]:
            self._bias = bias
        else:
            self._bias = np.where(frozen, bias, 0.0)

    def _update_lead(self, correct: np.ndarray, known: np.ndarray) -> None:
        """Each expert's lead over the best live expert, paired on the same events.

        ``lead[e]`` is an exponential moving average (horizon ``recall_horizon``) of
        ``correct[e] - correct[L]`` where ``L`` is the live expert with the best recent accuracy
        before this event.  Pairing on the same events removes the noise common to both (the
        label noise, the easy events): only the events where they disagree count, so a frozen
        expert whose concept came back shows a clear lead within ~100 events even when the
        concepts differ on few inputs (SEA's functions 4 and 1 disagree on 13% of the inputs, well
        inside the noise of two separate 50-event accuracies).
        """
        live = np.flatnonzero(~self.frozen & known)
        if live.size == 0:
            return
        best = live[np.argmax(self.recent_acc[live])]
        h = 1.0 / self.options["recall_horizon"]
        self.lead[known] += h * ((correct[known] - correct[best]) - self.lead[known])
        # a floor: an expert far behind during a long foreign concept must not need hundreds of
        # events to climb back once its own concept returns
        np.maximum(self.lead, -2.0 * self.options["recall_margin"], out=self.lead)

    def _update_recall(self, model) -> None:
        """Recall the frozen expert that leads the live ones by ``recall_margin``; release it when one catches up.

        While recalled, an expert gets a logit bonus of ``bias`` (it answers) but it does not
        learn: it stays a faithful memory of its concept, and the live experts, which keep
        learning the current data, take over once one of them is clearly more accurate (lead below
        ``-recall_margin``: the hysteresis keeps two equally good experts from taking turns).
        """
        o, r = self.options, self.recalled
        if r >= 0 and (not self.frozen[r] or self.lead[r] < -o["recall_margin"]):
            model._log("release", r, f"a live expert caught up with recalled expert {r} (lead {self.lead[r]:+.3f})")
            self.recalled = r = -1
        frozen = np.flatnonzero(self.frozen)
        if frozen.size == 0:
            return
        best = int(frozen[np.argmax(self.lead[frozen])])
        if best != r and self.lead[best] > o["recall_margin"] + (self.lead[r] if r >= 0 else 0.0):
            model._log("recall", best, f"frozen expert {best} leads the best live expert by {self.lead[best]:.3f} "
                                       f"over the last ~{o['recall_horizon']} events: its concept is back")
            self.recalled = best

    def learners(self, model, w: np.ndarray) -> list[int]:
        """``top_k`` unfrozen experts: first the young replacements, then the rest by weight.

        A replacement has no track record, so the router would rarely pick it; it takes the
        learning slot of the expert it replaced until it has learned ``grace`` events.
        """
        pool = model._pool
        grace = self.options["grace"]
        young = [e for e in range(pool.n) if self.born[e] > 0 and self.learned[e] < grace and not pool.frozen(e)]
        rest = [int(e) for e in np.argsort(-w, kind="stable") if int(e) not in young and not pool.frozen(int(e))]
        chosen = (young + rest)[: model.top_k]
        kinds = self.options["learn_all"]
        if kinds:
            chosen += [e for e in range(pool.n) if e not in chosen and not pool.frozen(e) and pool.kind(e) in kinds]
        return chosen

    def after_learn(self, model, P: np.ndarray, yi: int, learners: list[int]) -> None:
        known = P.sum(axis=1) > 0
        correct = (known & (np.argmax(P, axis=1) == yi)).astype(np.float64)
        a, b = 1.0 / self.options["recent"], 1.0 / self.options["memory"]
        # an expert that knows nothing yet is not scored (it answers nothing)
        self._update_lead(correct, known)
        self.recent_acc[known] += a * (correct[known] - self.recent_acc[known])
        self.memory_acc[known] += b * (correct[known] - self.memory_acc[known])
        drifting = []
        for e in learners:
            if model._pool.frozen(e):
                continue
            self.learned[e] += 1
            if not known[e]:
                continue
            adwin = self.adwins[e]
            before = adwin.estimation
            adwin.update(1.0 - correct[e])
            if adwin.drift_detected and adwin.estimation > before and self.learned[e] >= self.options["grace"]:
                drifting.append((e, before, adwin.estimation))
        for e, before, after in drifting:
            self._replace(model, e, before, after)
        pool = model._pool
        self.frozen = np.array([pool.frozen(e) for e in range(pool.n)], dtype=bool)
        self.events_since_drift = 0 if drifting else self.events_since_drift + 1
        self._update_recall(model)
        self._update_bias()

    # -- pool changes ----------------------------------------------------------------------
    def _replace(self, model, e: int, before: float, after: float) -> None:
        self.n_drifts += 1
        why = f"ADWIN: error rose from {before:.3f} to {after:.3f} after {int(self.learned[e])} learned events"
        specs = getattr(model._pool, "specs", None)
        spec = specs[e] if specs is not None else None
        model.freeze_expert(e, reason=why)
        new = model.grow_expert(spec, reason=f"replaces drifting expert {e}")
        self.adwins.append(self._adwin())
        self.learned = np.append(self.learned, 0)
        self.recent_acc = np.append(self.recent_acc, 0.0)
        self.memory_acc = np.append(self.memory_acc, 0.0)
        self.lead = np.append(self.lead, 0.0)
        self.born = np.append(self.born, max(1, model.n_learned_))
        self.frozen = np.append(self.frozen, False)
        assert new == len(self.adwins) - 1, "policy state out of step with the pool"
        while model.n_experts_ > self.options["budget"]:
            victim = self._least_useful(model)
            if victim is None:
                break
            model.prune_expert(victim, reason=f"pool over budget {self.options['budget']}: least useful frozen "
                                              f"expert (long-run accuracy {self.memory_acc[victim]:.3f})")
            self._drop(victim)

    def _least_useful(self, model) -> int | None:
        frozen = [e for e in range(model.n_experts_) if model._pool.frozen(e)]
        if not frozen:
            return None
        return min(frozen, key=lambda e: (self.memory_acc[e], self.born[e], e))

    def _drop(self, e: int) -> None:
        del self.adwins[e]
        if self.recalled == e:
            self.recalled = -1
        elif self.recalled > e:
            self.recalled -= 1
        for name in ("learned", "recent_acc", "memory_acc", "lead", "born", "frozen"):
            setattr(self, name, np.delete(getattr(self, name), e))

    # -- state -----------------------------------------------------------------------------
    def to_state(self) -> bytes:
        arrays = {
            "options": np.frombuffer(json.dumps(self.options, sort_keys=True).encode(), dtype=np.uint8),
            "learned": self.learned, "recent_acc": self.recent_acc, "memory_acc": self.memory_acc,
            "born": self.born, "frozen": self.frozen, "bias": self._bias, "lead": self.lead,
            "counters": np.array([self.n_drifts, self.events_since_drift, self.recalled], dtype=np.int64),
        }
        for e, adwin in enumerate(self.adwins):
            arrays.update(adwin_arrays(adwin, f"adwin{e}_"))
        return pack_arrays(arrays)

    @classmethod
    def from_state(cls, blob: bytes) -> "DriftAwarePool":
        a = unpack_arrays(blob)
        try:
            options = json.loads(bytes(a["options"]).decode())
            n = int(a["learned"].size)
            policy = cls(options, 0)
            policy.learned, policy.born = a["learned"].copy(), a["born"].copy()
            policy.recent_acc, policy.memory_acc = a["recent_acc"].copy(), a["memory_acc"].copy()
            policy.frozen = a["frozen"].copy()
            counters = [int(v) for v in a["counters"]]
            policy.n_drifts, policy.events_since_drift = counters[:2]
            # states saved before recall existed have no lead and no recalled expert
            policy.recalled = counters[2] if len(counters) > 2 else -1
            policy.lead = a["lead"].copy() if "lead" in a else np.zeros(n)
            policy._bias = a["bias"].copy()
            if policy.lead.shape != (n,) or not -1 <= policy.recalled < n:
                raise ValueError(f"lead of shape {policy.lead.shape} / recalled expert {policy.recalled} "
                                 f"do not fit a pool of {n} experts")
        except (KeyError, ValueError, TypeError) as exc:
            raise StateFormatError(f"not a valid drift-aware pool state: {exc}") from exc
        policy.adwins = [adwin_from_arrays(a, f"adwin{e}_") for e in range(n)]
        return policy


def make_policy(options: dict, model) -> DriftAwarePool:
    """Build the policy for ``DriftMoE(adaptive=options)``; the model must be in data mode."""
    if not isinstance(options, dict):
        raise ValueError(f"adaptive must be a dict of options, got {type(options).__name__}")
    if model.mode != "data":
        raise ValueError("the drift-aware pool (adaptive=...) needs mode='data'; task mode has one expert per class")
    policy = DriftAwarePool(options, model.n_experts_)
    if policy.options["budget"] < model.n_experts_:
        raise ValueError(f"adaptive budget {policy.options['budget']} is smaller than the initial pool "
                         f"({model.n_experts_} experts)")
    return policy
