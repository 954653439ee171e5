"""A pool of Hoeffding trees held in shared arrays, learned and queried by Numba kernels.

Why arrays: the DriftMoE loop asks every expert for a prediction on every event and lets a few
of them learn.  With one Python object per node (river) the interpreter dominates; with the
whole pool in a handful of NumPy arrays one compiled kernel runs a whole window of events.

The statistics and the split rule are those of river's ``tree.HoeffdingTreeClassifier`` with
its default ``GaussianSplitter(n_splits=10)``, ``split_criterion='info_gain'``,
``merit_preprune=True``, ``remove_poor_attrs=False``, binary splits ``x[f] <= threshold``,
``min_branch_fraction=0.01``, ``max_share_to_split=0.99`` and no nominal attributes.  The facts
of river's behaviour reproduced here:

* a leaf keeps class weights, and per feature and class a Welford Gaussian (weight, mean, M2)
  plus the min/max value seen; NBA leaves also count how often majority class and naive Bayes
  would have been right (checked *before* the leaf learns the event) and answer with naive
  Bayes while it is at least as good;
* a split is attempted when the leaf's weight grew by ``grace_period`` since the last attempt,
  unless its class distribution is pure; if one class holds more than 99% of the weight only
  the null split is considered;
* candidates: the null split (merit -inf) and, per feature, the best of 10 equal-width
  thresholds between the min and max seen; info gain is ``-inf`` unless both branches carry
  more than 1% of the weight; the winner must beat the runner-up by the Hoeffding bound
  ``sqrt(R^2 ln(1/delta) / 2n)``, ``R = log2(max(#classes in the leaf, 2))``, or the bound
  must drop below ``tau``; ties in merit go to the later candidate (river sorts stably);
* when the null split (or a feature without a valid threshold) wins, river deactivates the
  leaf and, right after, its memory manager reactivates every inactive leaf with *empty*
  splitters (its size estimates stay zero until the first estimate at 1M events).  The net
  effect, reproduced here, is that the leaf's Gaussian/min/max statistics are reset while its
  class weights and NBA counters stay;
* the two children start with the class weights that the Gaussians estimate for each side,
  empty splitters, and "last attempt" set to their initial weight;
* river keeps class weights in dicts, so sums, ties and the class count ``R`` follow the dicts'
  insertion order and keys (a class can be present with weight 0).  Each slot records that
  order (``keys``: the leaf's classes in insertion order; ``seen``: the classes in the order its
  splitters first saw them since they were last emptied), and every sum runs in that order.

With ``river_exact=True`` a tree is bit-for-bit river's tree (same splits, thresholds and
probabilities on every event; tested on SEA, LED and RandomRBF).  By default naive Bayes
squares with ``d * d`` instead of CPython's ``pow(d, 2)``, which differs in the last bit about
once in a thousand: probabilities can then differ by ~1e-16.  Remaining deviations: a feature
added mid-stream reuses the slot's ``seen`` order (river: the order since that feature's first
value), which can only reorder a sum; river's size-based deactivation (reachable after 1M
events with trees over ``max_size``) and ``max_depth`` are replaced by the node cap below.

Layout (one dimension per tree, all trees share the capacity; chosen over a flat pool because
``copy_tree``/``reset_tree`` are then slice copies and a GPU port maps one tree per block):

* per tree ``[E]``: ``n_nodes``, ``n_leaves``;
* per node ``[E, N]``: ``feature`` (split feature, ``-1`` for a leaf, i.e. ``is_leaf`` is
  ``feature < 0``), ``threshold``, ``left``, ``right``, ``depth``, ``slot`` (the node's leaf
  statistics slot, ``-1`` for a branch).  Node 0 is the root.  A split turns the leaf into a
  branch, appends its two children, gives the left child the parent's slot and the right child
  a new slot, so slots never need a free list;
* per leaf slot ``[E, L]`` with ``L = N // 2 + 1``: ``last_attempt``, ``mc_correct``,
  ``nb_correct``, ``n_keys``, ``n_seen``; ``[E, L, C]``: ``class_w``, ``keys``, ``seen``;
  Gaussians ``g_n, g_mean, g_m2, g_min, g_max`` ``[E, L, D, C]`` and two derived caches
  ``g_var`` (sample variance, 0 when undefined) and ``g_hlv`` (``0.5 * log(g_var)``) so that
  prediction needs no logarithm.

Memory cap: ``max_nodes`` and optionally ``max_bytes`` per tree (converted to nodes for the
current numbers of features and classes).  A tree at the cap stops attempting splits
altogether (no evaluation, hence also no pre-pruning resets); its leaves keep learning their
statistics and keep predicting.  Capacity below the cap doubles on demand.
"""
from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import njit
from numba.core.cpu import CPUTargetOptions

__all__ = ["TreePool", "TreeArrays", "LEAF_PREDICTIONS"]

#: ``leaf_prediction`` names and their codes inside the kernels
LEAF_PREDICTIONS = {"mc": 0, "nb": 1, "nba": 2}
_MC, _NB, _NBA = 0, 1, 2

# Indices into the float64 hyper-parameter vector ``hp`` handed to every kernel.
(HP_GRACE, HP_LOG_INV_DELTA, HP_TAU, HP_LEAF, HP_MAX_NODES, HP_N_SPLITS, HP_MIN_BRANCH, HP_MAX_SHARE,
 HP_EXACT, HP_TWO) = range(10)
_HP_SIZE = 10

_HALF_LOG_TAU = 0.5 * math.log(2.0 * math.pi)
_SQRT2 = math.sqrt(2.0)
_NEG_INF = -math.inf

#: array fields, in kernel order; the ``g_var``/``g_hlv`` caches are derived, never saved
TreeArrays = namedtuple(
    "TreeArrays",
    ["n_nodes", "n_leaves",
     "feature", "threshold", "left", "right", "depth", "slot",
     "last_attempt", "mc_correct", "nb_correct", "n_keys", "n_seen", "class_w", "keys", "seen",
     "g_n", "g_mean", "g_m2", "g_min", "g_max", "g_var", "g_hlv"],
)
_TREE_FIELDS = ("n_nodes", "n_leaves")
_NODE_FIELDS = ("feature", "threshold", "left", "right", "depth", "slot")
_SLOT_FIELDS = ("last_attempt", "mc_correct", "nb_correct", "n_keys", "n_seen")
_ORDER_FIELDS = ("keys", "seen")
_GAUSS_FIELDS = ("g_n", "g_mean", "g_m2", "g_min", "g_max")
_CACHE_FIELDS = ("g_var", "g_hlv")
_SAVED_FIELDS = _TREE_FIELDS + _NODE_FIELDS + _SLOT_FIELDS + ("class_w",) + _ORDER_FIELDS + _GAUSS_FIELDS
_INT_FIELDS = frozenset(_TREE_FIELDS + ("feature", "left", "right", "depth", "slot", "n_keys", "n_seen")
                        + _ORDER_FIELDS)
_CONFIG_KEYS = ("grace_period", "delta", "tau", "leaf_prediction", "max_nodes", "max_bytes",
                "n_splits", "min_branch_fraction", "max_share_to_split", "river_exact")


# ----------------------------------------------------------------------------------- kernels
# The kernels receive the pool as a namedtuple of ~25 arrays.  With Numba's reference counting
# (NRT) on, every call that is not inlined increfs and decrefs each of them: ~250 ns a call,
# more than predicting with a small tree.  The kernels never allocate (only views of arrays the
# caller owns), so they are compiled without NRT; the small hot ones are also forced inline (and
# all release the GIL, so a service thread keeps running while a window is learned).  A
# Numba lacking these (private) options gets plain ``njit``: same results, slower.
_KERNEL_OPTS = {"cache": True, "nogil": True}
if hasattr(CPUTargetOptions, "_nrt"):
    _KERNEL_OPTS["_nrt"] = False


def kernel(fn=None, *, inline: bool = False):
    """``numba.njit`` with this module's options; ``inline=True`` forces LLVM inlining."""
    opts = dict(_KERNEL_OPTS)
    if inline and hasattr(CPUTargetOptions, "forceinline"):
        opts["forceinline"] = True
    if fn is None:
        return lambda f: njit(**opts)(f)
    return njit(**opts)(fn)


def inner_only(*kernels) -> None:
    """Mark kernels that only other kernels call: they are compiled without the wrappers that make a
    kernel callable from Python (argument unboxing of the ~25 pool arrays, a C entry point).  Those
    wrappers were about a quarter of a cold start's compilation; a kernel called from Python must
    not be listed here (it would raise a TypeError)."""
    for k in kernels:
        k.targetoptions.update(no_cpython_wrapper=True, no_cfunc_wrapper=True)


@kernel(inline=True)
def find_leaf(A, t, x):
    """Node index of the leaf that ``x`` reaches in tree ``t``."""
    node = 0
    while A.feature[t, node] >= 0:
        if x[A.feature[t, node]] <= A.threshold[t, node]:
            node = A.left[t, node]
        else:
            node = A.right[t, node]
    return node


@kernel(inline=True)
def argmax_or_neg(p):
    """Index of the largest entry (lowest index on ties); ``-1`` when all entries are zero."""
    best = -1
    bv = 0.0
    for c in range(p.shape[0]):
        if p[c] > bv:
            bv = p[c]
            best = c
    return best


@kernel(inline=True)
def _has(order, n, c):
    for j in range(n):
        if order[j] == c:
            return True
    return False


@kernel(inline=True)
def _slot_total(A, t, s):
    """Weight seen by slot ``s``: its class weights summed in key order (as river sums)."""
    total = 0.0
    for j in range(A.n_keys[t, s]):
        total += A.class_w[t, s, A.keys[t, s, j]]
    return total


@kernel(inline=True)
def _mc_proba(A, t, s, out):
    """Normalised class weights of slot ``s`` (times 1/total, as river scales); zeros for a
    leaf that has seen nothing."""
    total = _slot_total(A, t, s)
    inv = 1.0 / total if total != 0.0 else 0.0
    for c in range(out.shape[0]):
        out[c] = A.class_w[t, s, c] * inv


@kernel(inline=True)
def _first_max(A, t, s, p):
    """Key-order argmax of ``p`` over slot ``s``'s classes (river's ``max`` over its dict)."""
    best = -1
    for j in range(A.n_keys[t, s]):
        c = A.keys[t, s, j]
        if best < 0 or p[c] > p[best]:
            best = c
    return best


@kernel(inline=True)
def _nb_proba(A, hp, t, s, x, out):
    """Gaussian naive Bayes posterior of slot ``s`` into ``out``; returns its key-order argmax,
    or ``-1`` (and zeros) when the slot has seen nothing.

    Log prior plus, feature by feature, the log density of every class whose Gaussian has a
    positive variance (others contribute nothing), then a log-sum-exp over the slot's classes in
    key order.  As in river, a class present with weight 0 gets a log-vote of 0.  With
    ``river_exact`` the square is ``d ** 2.0`` through libm's ``pow`` (what CPython computes;
    it differs from ``d * d`` in the last bit about once in a thousand), else ``d * d``.
    """
    exact = hp[HP_EXACT] != 0.0
    two = hp[HP_TWO]  # a runtime 2.0, so the compiler keeps the pow call
    C = out.shape[0]
    D = A.g_n.shape[2]
    nk = A.n_keys[t, s]
    total = _slot_total(A, t, s)
    for c in range(C):
        out[c] = 0.0
    if nk == 0 or total == 0.0:
        return -1
    for j in range(nk):
        c = A.keys[t, s, j]
        w = A.class_w[t, s, c]
        if w > 0.0:
            out[c] = math.log(w / total)
    for f in range(D):
        xf = x[f]
        for c in range(C):
            var = A.g_var[t, s, f, c]
            if var > 0.0 and A.class_w[t, s, c] > 0.0:
                d = xf - A.g_mean[t, s, f, c]
                d2 = d ** two if exact else d * d
                lp = d2 / (-2.0 * var) - _HALF_LOG_TAU - A.g_hlv[t, s, f, c]
                if lp > _NEG_INF:
                    out[c] += lp
    vmax = _NEG_INF
    for j in range(nk):
        c = A.keys[t, s, j]
        if out[c] > vmax:
            vmax = out[c]
    acc = 0.0
    for j in range(nk):
        acc += math.exp(out[A.keys[t, s, j]] - vmax)
    lse = vmax + math.log(acc)
    for j in range(nk):
        c = A.keys[t, s, j]
        out[c] = math.exp(out[c] - lse)
    return _first_max(A, t, s, out)


@kernel(inline=True)
def predict_tree(A, hp, t, x, out):
    """Write tree ``t``'s class probabilities for ``x`` into ``out`` (zeros: knows nothing).

    Returns the leaf's node index and, when ``out`` is that leaf's naive Bayes posterior, its
    key-order argmax (``-1`` if empty; ``-2`` when ``out`` is the majority-class answer) so that a
    learner of the same event can reuse it instead of recomputing it.
    """
    node = find_leaf(A, t, x)
    s = A.slot[t, node]
    mode = int(hp[HP_LEAF])
    if mode == _MC or (mode == _NBA and A.nb_correct[t, s] < A.mc_correct[t, s]):
        _mc_proba(A, t, s, out)
        return node, -2
    return node, _nb_proba(A, hp, t, s, x, out)


@kernel
def _clear_gaussians(A, t, s):
    """Forget slot ``s``'s splitter statistics (river: a fresh, empty splitter dict)."""
    A.n_seen[t, s] = 0
    for c in range(A.seen.shape[2]):
        A.seen[t, s, c] = -1
    for f in range(A.g_n.shape[2]):
        for c in range(A.g_n.shape[3]):
            A.g_n[t, s, f, c] = 0.0
            A.g_mean[t, s, f, c] = 0.0
            A.g_m2[t, s, f, c] = 0.0
            A.g_min[t, s, f, c] = 0.0
            A.g_max[t, s, f, c] = 0.0
            A.g_var[t, s, f, c] = 0.0
            A.g_hlv[t, s, f, c] = 0.0


@kernel
def _clear_slot(A, t, s):
    A.last_attempt[t, s] = 0.0
    A.mc_correct[t, s] = 0.0
    A.nb_correct[t, s] = 0.0
    A.n_keys[t, s] = 0
    for c in range(A.class_w.shape[2]):
        A.class_w[t, s, c] = 0.0
        A.keys[t, s, c] = -1
    _clear_gaussians(A, t, s)


@kernel(inline=True)
def _refresh_cache(A, t, s, f, c):
    """Derived variance and half log variance of one Gaussian (same formula as river's)."""
    n = A.g_n[t, s, f, c]
    var = A.g_m2[t, s, f, c] / (n - 1.0) if n > 1.0 else 0.0
    if var > 0.0:
        A.g_var[t, s, f, c] = var
        A.g_hlv[t, s, f, c] = 0.5 * math.log(var)
    else:
        A.g_var[t, s, f, c] = 0.0
        A.g_hlv[t, s, f, c] = 0.0


@kernel
def refresh_caches(A):
    """Recompute every derived cache (after a restore); bit-identical to incremental upkeep."""
    E, L, D, C = A.g_n.shape
    for t in range(E):
        for s in range(L):
            for f in range(D):
                for c in range(C):
                    _refresh_cache(A, t, s, f, c)


@kernel
def _entropy(p, order, n):
    """Entropy (bits) of the weights ``p[order[:n]]``, summed in that order; ``p < 0`` = absent."""
    ent = 0.0
    tot = 0.0
    for j in range(n):
        d = p[order[j]]
        if d > 0.0:
            ent -= d * math.log2(d)
            tot += d
    return (ent + tot * math.log2(tot)) / tot if tot > 0.0 else 0.0


@kernel
def _post_split(A, t, s, f, sv, lhs, rhs):
    """Class weights each side of ``x[f] <= sv`` as the leaf's Gaussians estimate them.

    A class absent from a side (river: no key in that side's dict) gets ``-1``; a present one
    may weigh exactly 0.
    """
    for c in range(lhs.shape[0]):
        lhs[c] = -1.0
        rhs[c] = -1.0
        n = A.g_n[t, s, f, c]
        if n <= 0.0:
            continue
        if sv < A.g_min[t, s, f, c]:
            rhs[c] = n
        elif sv >= A.g_max[t, s, f, c]:
            lhs[c] = n
        else:
            var = A.g_var[t, s, f, c]
            cdf = 0.0
            if var > 0.0:
                z = (sv - A.g_mean[t, s, f, c]) / math.sqrt(var)
                cdf = 0.5 * (1.0 + math.erf(z / _SQRT2))
            lhs[c] = cdf * n
            rhs[c] = n - lhs[c]


@kernel
def _side_weight(p, order, n):
    tot = 0.0
    for j in range(n):
        d = p[order[j]]
        if d >= 0.0:
            tot += d
    return tot


@kernel
def _best_threshold(A, hp, t, s, f, pre_entropy, lhs, rhs):
    """Best info-gain threshold of feature ``f`` among the equal-width candidates."""
    seen = A.seen[t, s]
    ns = A.n_seen[t, s]
    lo = math.inf
    hi = _NEG_INF
    for j in range(ns):
        c = seen[j]
        if A.g_n[t, s, f, c] > 0.0:
            if A.g_min[t, s, f, c] < lo:
                lo = A.g_min[t, s, f, c]
            if A.g_max[t, s, f, c] > hi:
                hi = A.g_max[t, s, f, c]
    best = _NEG_INF
    best_sv = 0.0
    if lo == math.inf:
        return best, best_sv
    n_splits = int(hp[HP_N_SPLITS])
    min_frac = hp[HP_MIN_BRANCH]
    width = (hi - lo) / (n_splits + 1.0)
    for i in range(n_splits):
        sv = lo + width * (i + 1)
        if not (lo < sv < hi):
            continue
        _post_split(A, t, s, f, sv, lhs, rhs)
        wl = _side_weight(lhs, seen, ns)
        wr = _side_weight(rhs, seen, ns)
        tot = wl + wr
        n_big = 0
        if tot > 0.0:
            if wl / tot > min_frac:
                n_big += 1
            if wr / tot > min_frac:
                n_big += 1
        if n_big < 2:
            merit = _NEG_INF
        else:
            merit = pre_entropy - (wl * _entropy(lhs, seen, ns) + wr * _entropy(rhs, seen, ns)) / tot
        if merit > best:
            best = merit
            best_sv = sv
    return best, best_sv


@kernel
def _init_child(A, t, cs, dist, order, n):
    """Slot ``cs`` becomes a fresh leaf holding the present entries of ``dist`` (in order)."""
    _clear_slot(A, t, cs)
    nk = 0
    for j in range(n):
        c = order[j]
        if dist[c] >= 0.0:
            A.class_w[t, cs, c] = dist[c]
            A.keys[t, cs, nk] = c
            nk += 1
    A.n_keys[t, cs] = nk
    A.last_attempt[t, cs] = _slot_total(A, t, cs)


@kernel
def _split_leaf(A, t, node, s, f, sv, lhs, rhs, order):
    """Turn leaf ``node`` into the branch ``x[f] <= sv`` with two fresh children."""
    _post_split(A, t, s, f, sv, lhs, rhs)
    ns = A.n_seen[t, s]
    for j in range(ns):
        order[j] = A.seen[t, s, j]
    left = A.n_nodes[t]
    right = left + 1
    s_right = A.n_leaves[t]
    _init_child(A, t, s, lhs, order, ns)
    _init_child(A, t, s_right, rhs, order, ns)
    depth = A.depth[t, node] + 1
    for child, cs in ((left, s), (right, s_right)):
        A.feature[t, child] = -1
        A.threshold[t, child] = 0.0
        A.left[t, child] = -1
        A.right[t, child] = -1
        A.depth[t, child] = depth
        A.slot[t, child] = cs
    A.feature[t, node] = f
    A.threshold[t, node] = sv
    A.left[t, node] = left
    A.right[t, node] = right
    A.slot[t, node] = -1
    A.n_nodes[t] += 2
    A.n_leaves[t] += 1


@kernel
def _attempt_split(A, hp, t, node, s, total, buf, order):
    """One Hoeffding split attempt at leaf ``node`` (slot ``s``), river's rules."""
    C = A.class_w.shape[2]
    D = A.g_n.shape[2]
    nk = A.n_keys[t, s]
    n_nonzero = 0
    majority = 0.0
    for j in range(nk):
        w = A.class_w[t, s, A.keys[t, s, j]]
        if w != 0.0:
            n_nonzero += 1
        if w > majority:
            majority = w
    if n_nonzero < 2:
        return
    if majority > 0.0 and majority / total > hp[HP_MAX_SHARE]:
        _clear_gaussians(A, t, s)  # only the null split is offered, and it wins
        return
    lhs = buf[:C]
    rhs = buf[C:2 * C]
    pre_entropy = _entropy(A.class_w[t, s], A.keys[t, s], nk)
    best = _NEG_INF  # the null split comes first
    second = _NEG_INF
    best_f = np.int64(-1)  # typed int64 from the start: a literal -1 would compile _split_leaf twice
    best_sv = 0.0
    for f in range(D):
        merit, sv = _best_threshold(A, hp, t, s, f, pre_entropy, lhs, rhs)
        if merit >= best:  # stable sort: a later candidate wins a tie
            second = best
            best = merit
            best_f = f if merit > _NEG_INF else -1
            best_sv = sv
        elif merit > second:
            second = merit
    if D == 0:
        should_split = True
    else:
        r = math.log2(max(nk, 2))
        bound = math.sqrt(r * r * hp[HP_LOG_INV_DELTA] / (2.0 * total))
        should_split = best - second > bound or bound < hp[HP_TAU]
    if not should_split:
        return
    if best_f < 0:
        _clear_gaussians(A, t, s)
        return
    _split_leaf(A, t, node, s, best_f, best_sv, lhs, rhs, order)


@kernel
def learn_tree(A, hp, t, x, y, buf, order):
    """Tree ``t`` learns ``(x, y)``; scratch: ``buf`` float64 and ``order`` int64, length
    ``>= 2 * n_classes`` and ``>= n_classes``.

    The caller guarantees room for two more nodes when the tree is below its node cap.
    """
    learn_leaf(A, hp, t, find_leaf(A, t, x), x, y, buf, order, np.int64(-2))  # int64: the window's overload


@kernel(inline=True)
def learn_leaf(A, hp, t, node, x, y, buf, order, nb_argmax):
    """Leaf ``node`` (the one ``x`` reaches) of tree ``t`` learns ``(x, y)``.

    ``nb_argmax`` is the key-order argmax of the leaf's current naive Bayes posterior for ``x``
    when the caller already has it (``-1``: empty posterior), ``-2`` to compute it here.
    """
    s = A.slot[t, node]
    C = A.class_w.shape[2]
    D = A.g_n.shape[2]
    if int(hp[HP_LEAF]) == _NBA:
        if A.n_keys[t, s] == 0:
            A.mc_correct[t, s] += 1.0  # empty leaf: assume the majority class would be right
        else:
            _mc_proba(A, t, s, buf[:C])
            if _first_max(A, t, s, buf[:C]) == y:
                A.mc_correct[t, s] += 1.0
        if nb_argmax == -2:
            nb_argmax = _nb_proba(A, hp, t, s, x, buf[:C])
        if nb_argmax == y:
            A.nb_correct[t, s] += 1.0
    if not _has(A.keys[t, s], A.n_keys[t, s], y):
        A.keys[t, s, A.n_keys[t, s]] = y
        A.n_keys[t, s] += 1
    A.class_w[t, s, y] += 1.0
    if not _has(A.seen[t, s], A.n_seen[t, s], y):
        A.seen[t, s, A.n_seen[t, s]] = y
        A.n_seen[t, s] += 1
    for f in range(D):
        v = x[f]
        n = A.g_n[t, s, f, y]
        if n == 0.0:
            A.g_min[t, s, f, y] = v
            A.g_max[t, s, f, y] = v
        else:
            if v < A.g_min[t, s, f, y]:
                A.g_min[t, s, f, y] = v
            if v > A.g_max[t, s, f, y]:
                A.g_max[t, s, f, y] = v
        n += 1.0
        mean_old = A.g_mean[t, s, f, y]
        mean_new = mean_old + (1.0 / n) * (v - mean_old)
        A.g_n[t, s, f, y] = n
        A.g_mean[t, s, f, y] = mean_new
        A.g_m2[t, s, f, y] += (v - mean_old) * (v - mean_new)
        _refresh_cache(A, t, s, f, y)
    total = _slot_total(A, t, s)
    if total - A.last_attempt[t, s] >= hp[HP_GRACE]:
        A.last_attempt[t, s] = total  # set first: a split hands this slot to the left child
        room = A.n_nodes[t] + 2
        if room <= hp[HP_MAX_NODES] and room <= A.feature.shape[1]:  # 2nd test: safety net only
            _attempt_split(A, hp, t, node, s, total, buf, order)


@kernel
def needs_room(A, hp):
    """True when some tree below its node cap has no room for one more split."""
    cap = A.feature.shape[1]
    for t in range(A.n_nodes.shape[0]):
        need = A.n_nodes[t] + 2
        if need > cap and need <= hp[HP_MAX_NODES]:
            return True
    return False


#: the value every entry of a field holds in an empty tree (links and orders -1, the rest 0)
_EMPTY = {name: -1 if name in ("feature", "left", "right", "slot") + _ORDER_FIELDS else 0
          for name in TreeArrays._fields}


def _reset_tree(A, t: int) -> None:
    """Tree ``t`` becomes a fresh tree: NumPy slice fills, the state :func:`_reset_tree_kernel`
    leaves (tested equal).  A reset runs when a pool is built or an expert replaced, never per
    event, so compiling a kernel for it would only lengthen a cold start."""
    for name in TreeArrays._fields:
        getattr(A, name)[t] = _EMPTY[name]
    A.slot[t, 0] = 0
    A.n_nodes[t] = 1
    A.n_leaves[t] = 1


@kernel
def _reset_tree_kernel(A, t):
    for node in range(A.feature.shape[1]):
        A.feature[t, node] = -1
        A.threshold[t, node] = 0.0
        A.left[t, node] = -1
        A.right[t, node] = -1
        A.depth[t, node] = 0
        A.slot[t, node] = -1
    for s in range(A.class_w.shape[1]):
        _clear_slot(A, t, s)
    A.slot[t, 0] = 0
    A.n_nodes[t] = 1
    A.n_leaves[t] = 1


# ----------------------------------------------------------------------------------- pool
def _check_links(d: dict[str, np.ndarray], D: int, C: int) -> None:
    """Reject a restored state whose indices would send a kernel outside its arrays (the
    kernels do not bounds-check) or into a loop: counts within the arrays, split features
    within ``D``, children after their parent inside the tree, leaves on valid slots, class
    orders within ``C``."""
    n_nodes, n_leaves, feat = d["n_nodes"], d["n_leaves"], d["feature"]
    E, n_used = feat.shape
    s_used = d["class_w"].shape[1]
    if not E:
        return
    if (n_nodes < 1).any() or (n_nodes > n_used).any() or (n_leaves < 1).any() or (n_leaves > s_used).any():
        raise ValueError("tree pool state has node or leaf counts outside its arrays")
    idx = np.arange(n_used)[None, :]
    nn = n_nodes[:, None]
    live = idx < nn
    if ((feat < -1) | (feat >= D))[live].any():
        raise ValueError("tree pool state has split features outside [0, n_features)")
    branch = live & (feat >= 0)
    for side in ("left", "right"):
        child = d[side]
        if ((child <= idx) | (child >= nn))[branch].any():
            raise ValueError(f"tree pool state has {side} children outside their tree")
    slot = d["slot"]
    if ((slot < 0) | (slot >= n_leaves[:, None]))[live & (feat < 0)].any():
        raise ValueError("tree pool state has leaves pointing outside their slots")
    for order, count in (("keys", "n_keys"), ("seen", "n_seen")):
        o, k = d[order], d[count]
        if (k < 0).any() or (k > C).any():
            raise ValueError(f"tree pool state has {count} outside [0, n_classes]")
        used = np.arange(C)[None, None, :] < k[:, :, None]
        if ((o < 0) | (o >= C))[used].any():
            raise ValueError(f"tree pool state has {order} outside [0, n_classes)")


def _capacity_ladder(need: int, cap: int) -> int:
    """Smallest ``2**k - 1 >= need`` (k >= 4), clipped to ``cap`` but never below ``need``."""
    n = 15
    while n < need:
        n = 2 * n + 1
    return max(min(n, cap), need)


class TreePool:
    """``n_trees`` Hoeffding trees over ``n_features`` dense features and ``n_classes`` classes.

    ``grace_period``, ``delta``, ``tau``, ``leaf_prediction`` (``'mc'``, ``'nb'``, ``'nba'``),
    ``n_splits``, ``min_branch_fraction`` and ``max_share_to_split`` mean what they mean in
    river's ``HoeffdingTreeClassifier``/``GaussianSplitter``.  ``max_nodes`` and ``max_bytes``
    (``None``: no byte cap) bound each tree; ``river_exact`` reproduces river's floating point
    bit for bit at some cost in naive Bayes speed (see the module docstring).

    ``x`` is a float64 vector of length ``n_features`` with finite values, ``y`` an int class
    index in ``[0, n_classes)``.  Trees are addressed by index ``t`` in ``[0, n_trees)``.
    """

    def __init__(self, n_trees: int, n_features: int, n_classes: int, grace_period: float = 50,
                 delta: float = 1e-7, tau: float = 0.05, leaf_prediction: str = "nba",
                 max_nodes: int = 2**20 - 1, max_bytes: int | None = 64 * 2**20, *,
                 n_splits: int = 10, min_branch_fraction: float = 0.01,
                 max_share_to_split: float = 0.99, river_exact: bool = False):
        for name, v in (("n_trees", n_trees), ("n_features", n_features), ("n_classes", n_classes)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be a non-negative int, got {v!r}")
        for name, v in (("grace_period", grace_period), ("delta", delta), ("tau", tau),
                        ("max_nodes", max_nodes), ("n_splits", n_splits),
                        ("min_branch_fraction", min_branch_fraction),
                        ("max_share_to_split", max_share_to_split)):
            if not isinstance(v, (int, float, np.integer, np.floating)) or isinstance(v, bool):
                raise ValueError(f"{name} must be a number, got {v!r}")
        if not grace_period > 0:
            raise ValueError(f"grace_period must be > 0, got {grace_period!r}")
        if not 0.0 < delta < 1.0:
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        if not tau >= 0.0:
            raise ValueError(f"tau must be >= 0, got {tau!r}")
        if leaf_prediction not in LEAF_PREDICTIONS:
            raise ValueError(f"leaf_prediction must be one of {sorted(LEAF_PREDICTIONS)}, "
                             f"got {leaf_prediction!r}")
        if int(max_nodes) < 1:
            raise ValueError(f"max_nodes must be >= 1, got {max_nodes!r}")
        if max_bytes is not None and int(max_bytes) <= 0:
            raise ValueError(f"max_bytes must be positive or None, got {max_bytes!r}")
        if int(n_splits) < 1:
            raise ValueError(f"n_splits must be >= 1, got {n_splits!r}")
        self.grace_period = float(grace_period)
        self.delta = float(delta)
        self.tau = float(tau)
        self.leaf_prediction = leaf_prediction
        self.max_nodes = int(max_nodes)
        self.max_bytes = None if max_bytes is None else int(max_bytes)
        self.n_splits = int(n_splits)
        self.min_branch_fraction = float(min_branch_fraction)
        self.max_share_to_split = float(max_share_to_split)
        self.river_exact = bool(river_exact)
        self.hp = np.zeros(_HP_SIZE)
        N = _capacity_ladder(1, self._node_cap(int(n_features), int(n_classes)))
        self._alloc(int(n_trees), int(n_features), int(n_classes), N)
        for t in range(self.n_trees):
            _reset_tree(self.arrays, t)

    # ------------------------------------------------------------------ shapes and memory
    @property
    def n_trees(self) -> int:
        return self.arrays.n_nodes.shape[0]

    @property
    def n_features(self) -> int:
        return self.arrays.g_n.shape[2]

    @property
    def n_classes(self) -> int:
        return self.arrays.class_w.shape[2]

    @property
    def capacity(self) -> int:
        """Node capacity shared by all trees (grows by doubling up to the cap)."""
        return self.arrays.feature.shape[1]

    @staticmethod
    def _bytes_for(n_nodes: int, n_features: int, n_classes: int) -> int:
        slots = n_nodes // 2 + 1
        per_slot = 8 * (len(_SLOT_FIELDS) + (1 + len(_ORDER_FIELDS)) * n_classes
                        + (len(_GAUSS_FIELDS) + len(_CACHE_FIELDS)) * n_features * n_classes)
        return 8 * len(_TREE_FIELDS) + 8 * len(_NODE_FIELDS) * n_nodes + per_slot * slots

    def node_cap(self) -> int:
        """Nodes a tree may reach under ``max_nodes`` and ``max_bytes`` at the current sizes.

        ``max_bytes`` is judged at the current numbers of features and classes: when they grow,
        the cap shrinks, and a tree already past it keeps its nodes but stops splitting.
        """
        return self._node_cap(self.n_features, self.n_classes)

    def _node_cap(self, n_features: int, n_classes: int) -> int:
        cap = self.max_nodes
        if self.max_bytes is not None:
            lo, hi = 1, cap
            while lo < hi:  # largest node count whose arrays fit in max_bytes
                mid = (lo + hi + 1) // 2
                if self._bytes_for(mid, n_features, n_classes) <= self.max_bytes:
                    lo = mid
                else:
                    hi = mid - 1
            cap = lo
        return cap

    def nbytes_per_tree(self) -> int:
        """Bytes one tree's share of the arrays occupies at the current capacity."""
        total = sum(a.nbytes for a in self.arrays)
        return total // max(self.n_trees, 1)

    def _refresh_hp(self) -> None:
        hp = self.hp
        hp[HP_GRACE] = self.grace_period
        hp[HP_LOG_INV_DELTA] = math.log(1.0 / self.delta)
        hp[HP_TAU] = self.tau
        hp[HP_LEAF] = LEAF_PREDICTIONS[self.leaf_prediction]
        hp[HP_MAX_NODES] = self.node_cap()
        hp[HP_N_SPLITS] = self.n_splits
        hp[HP_MIN_BRANCH] = self.min_branch_fraction
        hp[HP_MAX_SHARE] = self.max_share_to_split
        hp[HP_EXACT] = 1.0 if self.river_exact else 0.0
        hp[HP_TWO] = 2.0

    def _alloc(self, E: int, D: int, C: int, N: int, old: TreeArrays | None = None) -> None:
        """(Re)allocate every array at ``E`` trees, ``D`` features, ``C`` classes, ``N`` nodes,
        copying the overlapping part of ``old``; new entries are zero (nodes: empty)."""
        L = N // 2 + 1
        shapes = {}
        for name in _TREE_FIELDS:
            shapes[name] = (E,)
        for name in _NODE_FIELDS:
            shapes[name] = (E, N)
        for name in _SLOT_FIELDS:
            shapes[name] = (E, L)
        for name in ("class_w",) + _ORDER_FIELDS:
            shapes[name] = (E, L, C)
        for name in _GAUSS_FIELDS + _CACHE_FIELDS:
            shapes[name] = (E, L, D, C)
        fields = {}
        for name in TreeArrays._fields:
            dtype = np.int64 if name in _INT_FIELDS else np.float64
            a = np.full(shapes[name], _EMPTY[name], dtype=dtype)
            if old is not None:
                src = getattr(old, name)
                a[tuple(slice(0, min(m, k)) for m, k in zip(a.shape, src.shape))] = \
                    src[tuple(slice(0, min(m, k)) for m, k in zip(a.shape, src.shape))]
            fields[name] = a
        self.arrays = TreeArrays(**fields)
        self._refresh_hp()

    def _ensure_room(self) -> None:
        """Grow the node capacity so that every tree below its cap can split once more."""
        if needs_room(self.arrays, self.hp):
            need = int(self.arrays.n_nodes.max()) + 2
            N = _capacity_ladder(need, int(self.hp[HP_MAX_NODES]))
            self._alloc(self.n_trees, self.n_features, self.n_classes, N, self.arrays)

    def add_features(self, k: int) -> None:
        """Append ``k`` features (unseen so far: their statistics start empty everywhere)."""
        if not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"add_features needs a non-negative int, got {k!r}")
        if k:
            self._alloc(self.n_trees, self.n_features + int(k), self.n_classes, self.capacity, self.arrays)

    def ensure_classes(self, n: int) -> None:
        """Make room for at least ``n`` classes (new classes start with zero statistics)."""
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"ensure_classes needs a non-negative int, got {n!r}")
        if n > self.n_classes:
            self._alloc(self.n_trees, self.n_features, int(n), self.capacity, self.arrays)

    def add_trees(self, k: int) -> int:
        """Append ``k`` empty trees; returns the index of the first new one."""
        if not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"add_trees needs a non-negative int, got {k!r}")
        first = self.n_trees
        self._alloc(first + int(k), self.n_features, self.n_classes, self.capacity, self.arrays)
        for t in range(first, self.n_trees):
            _reset_tree(self.arrays, t)
        return first

    # ------------------------------------------------------------------ validation
    def _tree(self, t) -> int:
        if not isinstance(t, (int, np.integer)) or not 0 <= t < self.n_trees:
            raise IndexError(f"tree index {t!r} out of range for a pool of {self.n_trees} trees")
        return int(t)

    def check_x(self, x) -> np.ndarray:
        """``x`` as a contiguous float64 vector of the pool's width, or a ValueError."""
        xv = np.ascontiguousarray(x, dtype=np.float64)
        if xv.ndim != 1 or xv.shape[0] != self.n_features:
            raise ValueError(f"x must be a vector of {self.n_features} features, got shape {xv.shape}")
        if not np.isfinite(xv).all():
            raise ValueError("x contains NaN or infinite values")
        return xv

    def check_y(self, y) -> int:
        if not isinstance(y, (int, np.integer)) or isinstance(y, bool) or not 0 <= y < self.n_classes:
            raise ValueError(f"y must be a class index in [0, {self.n_classes}), got {y!r}")
        return int(y)

    # ------------------------------------------------------------------ per-event API
    def predict_proba(self, t: int, x) -> np.ndarray:
        """Class probabilities of tree ``t`` for ``x`` (sums to 1, or all zeros if untrained)."""
        t = self._tree(t)
        out = np.zeros(self.n_classes)
        predict_tree(self.arrays, self.hp, t, self.check_x(x), out)
        return out

    def learn(self, t: int, x, y: int) -> None:
        """Tree ``t`` learns one labelled event."""
        t = self._tree(t)
        xv = self.check_x(x)
        y = self.check_y(y)
        learn_tree(self.arrays, self.hp, t, xv, y, np.zeros(2 * self.n_classes),
                   np.zeros(self.n_classes, dtype=np.int64))
        self._ensure_room()

    def reset_tree(self, t: int) -> None:
        """Put a fresh, empty tree in slot ``t``."""
        _reset_tree(self.arrays, self._tree(t))

    def copy_tree(self, src: int, dst: int) -> None:
        """Make tree ``dst`` an exact copy of tree ``src``."""
        src, dst = self._tree(src), self._tree(dst)
        if src != dst:
            for a in self.arrays:
                a[dst] = a[src]

    def n_nodes(self, t: int) -> int:
        return int(self.arrays.n_nodes[self._tree(t)])

    def n_leaves(self, t: int) -> int:
        return int(self.arrays.n_leaves[self._tree(t)])

    def describe(self, t: int) -> dict:
        """Shape of tree ``t``: node/leaf counts, height and the split features in node order."""
        t = self._tree(t)
        a = self.arrays
        n = int(a.n_nodes[t])
        feats = [int(f) for f in a.feature[t, :n] if f >= 0]
        return {"n_nodes": n, "n_leaves": int(a.n_leaves[t]),
                "height": int(a.depth[t, :n].max()) + 1 if n else 0, "split_features": feats}

    # ------------------------------------------------------------------ state
    def config(self) -> dict:
        return {"grace_period": self.grace_period, "delta": self.delta, "tau": self.tau,
                "leaf_prediction": self.leaf_prediction, "max_nodes": self.max_nodes,
                "max_bytes": self.max_bytes, "n_splits": self.n_splits,
                "min_branch_fraction": self.min_branch_fraction,
                "max_share_to_split": self.max_share_to_split, "river_exact": self.river_exact}

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every field as a plain numeric array, trimmed to the used nodes/slots (no pickle).

        ``config`` is a float64 vector in the order of ``_CONFIG_KEYS`` (leaf_prediction as
        its code, max_bytes -1 for None); ``shape`` is int64 ``[n_trees, n_features, n_classes]``.
        """
        a = self.arrays
        n_used = int(a.n_nodes.max()) if self.n_trees else 0
        s_used = int(a.n_leaves.max()) if self.n_trees else 0
        out: dict[str, np.ndarray] = {}
        for name in _SAVED_FIELDS:
            arr = getattr(a, name)
            if name in _NODE_FIELDS:
                arr = arr[:, :n_used]
            elif name not in _TREE_FIELDS:
                arr = arr[:, :s_used]
            out[name] = np.array(arr, copy=True)
        cfg = self.config()
        cfg["leaf_prediction"] = LEAF_PREDICTIONS[self.leaf_prediction]
        cfg["max_bytes"] = -1 if self.max_bytes is None else self.max_bytes
        cfg["river_exact"] = 1.0 if self.river_exact else 0.0
        out["config"] = np.array([float(cfg[k]) for k in _CONFIG_KEYS], dtype=np.float64)
        out["shape"] = np.array([self.n_trees, self.n_features, self.n_classes], dtype=np.int64)
        return out

    @classmethod
    def from_arrays(cls, d: dict[str, np.ndarray]) -> "TreePool":
        """Inverse of :meth:`to_arrays`; the restored pool continues bit-identically."""
        missing = [k for k in _SAVED_FIELDS + ("config", "shape") if k not in d]
        if missing:
            raise ValueError(f"tree pool state lacks fields {missing}")
        shape = np.asarray(d["shape"])
        cfg = np.asarray(d["config"])
        if shape.shape != (3,) or cfg.shape != (len(_CONFIG_KEYS),):
            raise ValueError("tree pool state has a malformed 'shape' or 'config' array")
        E, D, C = (int(v) for v in shape)
        codes = {v: k for k, v in LEAF_PREDICTIONS.items()}
        kw = dict(zip(_CONFIG_KEYS, cfg.tolist()))
        if kw["leaf_prediction"] not in codes:
            raise ValueError(f"unknown leaf_prediction code {kw['leaf_prediction']!r} in tree pool state")
        pool = cls(0, D, C, grace_period=kw["grace_period"], delta=kw["delta"], tau=kw["tau"],
                   leaf_prediction=codes[kw["leaf_prediction"]], max_nodes=int(kw["max_nodes"]),
                   max_bytes=None if kw["max_bytes"] < 0 else int(kw["max_bytes"]),
                   n_splits=int(kw["n_splits"]), min_branch_fraction=kw["min_branch_fraction"],
                   max_share_to_split=kw["max_share_to_split"], river_exact=bool(kw["river_exact"]))
        n_used = np.asarray(d["feature"]).shape[1] if np.asarray(d["feature"]).ndim == 2 else -1
        s_used = np.asarray(d["class_w"]).shape[1] if np.asarray(d["class_w"]).ndim == 3 else -1
        expect = {}
        for name in _TREE_FIELDS:
            expect[name] = (E,)
        for name in _NODE_FIELDS:
            expect[name] = (E, n_used)
        for name in _SLOT_FIELDS:
            expect[name] = (E, s_used)
        for name in ("class_w",) + _ORDER_FIELDS:
            expect[name] = (E, s_used, C)
        for name in _GAUSS_FIELDS:
            expect[name] = (E, s_used, D, C)
        for name in _SAVED_FIELDS:
            arr = np.asarray(d[name])
            kind = "i" if name in _INT_FIELDS else "f"
            if arr.shape != expect[name] or arr.dtype.kind != kind:
                raise ValueError(f"tree pool field {name!r}: expected shape {expect[name]} ({kind}), "
                                 f"got {arr.shape} ({arr.dtype})")
        _check_links({name: np.asarray(d[name]) for name in _SAVED_FIELDS}, D, C)
        N = _capacity_ladder(max(n_used + 2, 1), max(int(pool.hp[HP_MAX_NODES]), n_used))
        stub = TreeArrays(**{name: np.asarray(d[name]) if name in _SAVED_FIELDS
                             else np.zeros((E, s_used, D, C)) for name in TreeArrays._fields})
        pool._alloc(E, D, C, N, stub)
        refresh_caches(pool.arrays)
        return pool


inner_only(find_leaf, _has, _slot_total, _mc_proba, _first_max, _nb_proba, _clear_gaussians, _clear_slot,
           _refresh_cache, _entropy, _post_split, _side_weight, _best_threshold, _init_child, _split_leaf,
           _attempt_split, learn_leaf)
