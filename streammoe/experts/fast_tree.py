"""A pool of Hoeffding trees held in shared arrays, learned and queried by Numba kernels.

Why arrays: the DriftMoE loop asks every expert for a prediction on every event and lets a few
of them learn.  With one Python object per node (river) the interpreter dominates; with the
whole pool in a handful of NumPy arrays one compiled kernel runs a whole window of events.

The statistics and the split rule are those of river's ``tree.HoeffdingTreeClassifier`` with
its default ``GaussianSplitter(n_splits=10)``, ``split_criterion='info_gain'``,
``merit_preprune=True``, ``remove_poor_attrs=False``, binary splits ``x[f] <= threshold``,
``min_branch_fraction=0.01``, ``max_share_to_split=0.99``, and nominal attributes (river's
``NominalSplitterClassif``) for the features marked nominal (:meth:`TreePool.add_features`),
whose values are integer category codes.  The facts of river's behaviour reproduced here:

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
* a nominal feature keeps per category and class the weight seen; its candidates are the
  multiway split (one branch per category, categories and classes in ascending order) and then
  each binary split ``x[f] == v`` in the order of river's ``set`` of values (emulated:
  CPython's table layout for int keys), a later one winning only with a higher merit; its
  suggestion names the feature even at merit ``-inf``.  A multiway branch grows a child when
  learning meets a category it has no child for, and sends such a category to its heaviest
  child at prediction (river's ``most_common_path``).  Naive Bayes multiplies in
  ``n(v, c) / n(c)`` when positive.  River's naive Bayes inserts the leaf's classes into each
  nominal splitter's class dict (a ``defaultdict`` lookup), which fixes the order of the
  children's class weights; ``nseen`` records that order (exactly for ``'nba'`` and ``'mc'``
  leaves; for ``'nb'`` leaves river inserts at prediction time, which only the order of sums
  can show);
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
 HP_EXACT, HP_TWO, HP_ROOM) = range(11)
_HP_SIZE = 11

_HALF_LOG_TAU = 0.5 * math.log(2.0 * math.pi)
_SQRT2 = math.sqrt(2.0)
_NEG_INF = -math.inf

#: array fields, in kernel order; the ``g_var``/``g_hlv`` caches are derived, never saved
TreeArrays = namedtuple(
    "TreeArrays",
    ["n_nodes", "n_leaves",
     "feature", "threshold", "left", "right", "depth", "slot",
     "last_attempt", "mc_correct", "nb_correct", "n_keys", "n_seen", "class_w", "keys", "seen",
     "g_n", "g_mean", "g_m2", "g_min", "g_max", "g_var", "g_hlv",
     "nom_index", "cat_w", "cat_order", "cat_n", "nseen", "n_nseen", "n_mw", "mw_child", "mw_order", "mw_n",
     "set_tab"],
)
_TREE_FIELDS = ("n_nodes", "n_leaves")
_NODE_FIELDS = ("feature", "threshold", "left", "right", "depth", "slot")
_SLOT_FIELDS = ("last_attempt", "mc_correct", "nb_correct", "n_keys", "n_seen")
_ORDER_FIELDS = ("keys", "seen")
_GAUSS_FIELDS = ("g_n", "g_mean", "g_m2", "g_min", "g_max")
_CACHE_FIELDS = ("g_var", "g_hlv")
_SAVED_FIELDS = _TREE_FIELDS + _NODE_FIELDS + _SLOT_FIELDS + ("class_w",) + _ORDER_FIELDS + _GAUSS_FIELDS
#: nominal (categorical) attributes: per tree ``nom_index`` [E, D] (the feature's index among the
#: nominal ones, -1 for a numeric feature; equal in every tree), per slot ``cat_w`` [E, L, Dn, V, C]
#: (weight of each category per class), ``cat_order`` [E, L, Dn, V] (categories in the order the
#: slot first saw them) and ``cat_n`` [E, L, Dn]; ``nseen`` [E, L, C] / ``n_nseen`` [E, L]: the class
#: order of the slot's nominal splitters (river's ``defaultdict``, into which naive Bayes also
#: inserts the leaf's classes); ``set_tab`` [E, 2 T] is scratch (never saved).
#: Saved only when the pool has nominal features, so numeric states keep their layout.
#: A multiway branch (river's ``NominalMultiwayBranch``) is a node with ``left == -2`` and
#: ``right = m``, its row in ``mw_child`` [E, M, V] (child node per category, -1: none yet),
#: ``mw_order`` [E, M, V] (children in river's list order) and ``mw_n`` [E, M]; ``n_mw`` [E]
#: counts the rows used, ``M = N``.  With nominal features a node may have many children (or
#: one), so slots are sized ``L = N``.
_NOMINAL_FIELDS = ("nom_index", "cat_w", "cat_order", "cat_n", "nseen", "n_nseen", "n_mw", "mw_child",
                   "mw_order", "mw_n")
_MULTIWAY = -2
_INT_FIELDS = frozenset(_TREE_FIELDS + ("feature", "left", "right", "depth", "slot", "n_keys", "n_seen")
                        + _ORDER_FIELDS + ("nom_index", "cat_order", "cat_n", "nseen", "n_nseen", "set_tab",
                                           "n_mw", "mw_child", "mw_order", "mw_n"))
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


@kernel
def _subtree_weight(A, t, node):
    """river's ``total_weight`` of a node: a leaf's class weights summed in key order, a
    branch's children's totals summed in child order."""
    if A.feature[t, node] < 0:
        return _slot_total(A, t, A.slot[t, node])
    if A.left[t, node] == _MULTIWAY:
        m = A.right[t, node]
        tot = 0.0
        for i in range(A.mw_n[t, m]):
            tot += _subtree_weight(A, t, A.mw_order[t, m, i])
        return tot
    return _subtree_weight(A, t, A.left[t, node]) + _subtree_weight(A, t, A.right[t, node])


@kernel
def _most_common_child(A, t, m):
    """river's ``most_common_path`` of multiway row ``m``: the first child of largest weight."""
    best = A.mw_order[t, m, 0]
    bw = _subtree_weight(A, t, best)
    for i in range(1, A.mw_n[t, m]):
        child = A.mw_order[t, m, i]
        w = _subtree_weight(A, t, child)
        if w > bw:
            best = child
            bw = w
    return best


@kernel(inline=True)
def walk(A, t, x):
    """``(leaf, fell_back)``: the leaf ``x`` reaches in tree ``t``, and whether a multiway branch
    had no child for ``x``'s category on the way (then, as river predicts, ``x`` took the
    branch's most common path; learning ``x`` grows a child instead, see :func:`learn_leaf`)."""
    node = 0
    fell_back = False
    while A.feature[t, node] >= 0:
        f = A.feature[t, node]
        if A.left[t, node] == _MULTIWAY:
            child = A.mw_child[t, A.right[t, node], int(x[f])]
            if child < 0:
                fell_back = True
                child = _most_common_child(A, t, A.right[t, node])
            node = child
            continue
        if A.nom_index[t, f] >= 0:  # nominal binary: x[f] == value goes left (river's branch 0)
            go_left = x[f] == A.threshold[t, node]
        else:
            go_left = x[f] <= A.threshold[t, node]
        if go_left:
            node = A.left[t, node]
        else:
            node = A.right[t, node]
    return node, fell_back


@kernel(inline=True)
def find_leaf(A, t, x):
    """Node index of the leaf that ``x`` reaches in tree ``t`` (as river predicts)."""
    return walk(A, t, x)[0]


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
        k = A.nom_index[t, f]
        if k >= 0:  # river's NominalSplitterClassif.cond_proba: log(n(v, c) / n(c)) when positive
            v = int(xf)
            for c in range(C):
                if A.class_w[t, s, c] > 0.0:
                    tot = 0.0
                    for u in range(A.cat_w.shape[3]):
                        tot += A.cat_w[t, s, k, u, c]
                    if tot > 0.0:
                        tmp = A.cat_w[t, s, k, v, c] / tot
                        if tmp > 0.0:
                            out[c] += math.log(tmp)
            continue
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
    learner of the same event can reuse it instead of recomputing it.  The index is
    ``-(leaf + 2)`` when ``x`` took a multiway branch's most common path (a category the branch
    has no child for): :func:`learn_leaf` then grows that child instead of learning at ``leaf``.
    """
    node, fell_back = walk(A, t, x)
    s = A.slot[t, node]
    mode = int(hp[HP_LEAF])
    ret = -node - 2 if fell_back else node
    if mode == _MC or (mode == _NBA and A.nb_correct[t, s] < A.mc_correct[t, s]):
        _mc_proba(A, t, s, out)
        return ret, -2
    return ret, _nb_proba(A, hp, t, s, x, out)


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
    A.n_nseen[t, s] = 0
    for c in range(A.nseen.shape[2]):
        A.nseen[t, s, c] = -1
    for k in range(A.cat_w.shape[2]):
        A.cat_n[t, s, k] = 0
        for v in range(A.cat_w.shape[3]):
            A.cat_order[t, s, k, v] = -1
            for c in range(A.cat_w.shape[4]):
                A.cat_w[t, s, k, v, c] = 0.0


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


@kernel(inline=True)
def _set_insert(tab, off, mask, key):
    """Put ``key`` where CPython's set puts a new int (hash = key): probe ``i``, then up to
    9 linear neighbours, then ``i = 5 i + 1 + perturb`` with ``perturb >>= 5``."""
    perturb = key
    i = key & mask
    while True:
        if tab[off + i] < 0:
            tab[off + i] = key
            return
        if i + 9 <= mask:
            for j in range(1, 10):
                if tab[off + i + j] < 0:
                    tab[off + i + j] = key
                    return
        perturb >>= 5
        i = (i * 5 + 1 + perturb) & mask


@kernel
def _set_order(A, t, s, k):
    """Lay slot ``s``'s categories of nominal feature ``k`` out as CPython's ``set`` does when
    they are added in first-seen order (river iterates that set to order its binary split
    candidates, and ties go to the earlier one).  Returns ``(offset, mask)`` of the table in
    ``A.set_tab[t]``: iterating it and skipping ``-1`` gives the set's order."""
    tab = A.set_tab[t]
    half = tab.shape[0] // 2
    cur = 0
    mask = 7
    for i in range(8):
        tab[i] = -1
    fill = 0
    for m in range(A.cat_n[t, s, k]):
        _set_insert(tab, cur, mask, A.cat_order[t, s, k, m])
        fill += 1
        if fill * 5 >= mask * 3:  # CPython resizes to the smallest power of 2 above 4 * used
            size = 8
            while size <= fill * 4:
                size <<= 1
            nxt = half - cur
            for i in range(size):
                tab[nxt + i] = -1
            for i in range(mask + 1):
                if tab[cur + i] >= 0:
                    _set_insert(tab, nxt, size - 1, tab[cur + i])
            cur = nxt
            mask = size - 1
    return cur, mask


@kernel
def _nominal_dist(A, t, s, k, v, lhs, rhs):
    """Class weights of ``x[f] == v`` (``lhs``) and ``x[f] != v`` (``rhs``) for nominal feature
    index ``k``; a class with no weight on a side is absent there (``-1``), as in river."""
    for c in range(lhs.shape[0]):
        lhs[c] = -1.0
        rhs[c] = -1.0
    for j in range(A.n_nseen[t, s]):
        c = A.nseen[t, s, j]
        eq = A.cat_w[t, s, k, v, c]
        if eq > 0.0:
            lhs[c] = eq
        other = 0.0
        found = False
        for m in range(A.cat_n[t, s, k]):
            u = A.cat_order[t, s, k, m]
            if u != v and A.cat_w[t, s, k, u, c] > 0.0:
                other += A.cat_w[t, s, k, u, c]
                found = True
        if found:
            rhs[c] = other


@kernel
def _split_merit(A, hp, t, s, pre_entropy, lhs, rhs):
    """Info gain of a nominal two-way split (``-inf`` unless both sides carry more than
    ``min_branch_fraction`` of the weight), summed in the nominal splitters' class order."""
    seen = A.nseen[t, s]
    ns = A.n_nseen[t, s]
    wl = _side_weight(lhs, seen, ns)
    wr = _side_weight(rhs, seen, ns)
    tot = wl + wr
    min_frac = hp[HP_MIN_BRANCH]
    n_big = 0
    if tot > 0.0:
        if wl / tot > min_frac:
            n_big += 1
        if wr / tot > min_frac:
            n_big += 1
    if n_big < 2:
        return _NEG_INF
    return pre_entropy - (wl * _entropy(lhs, seen, ns) + wr * _entropy(rhs, seen, ns)) / tot


@kernel
def _multiway_merit(A, hp, t, s, k, pre_entropy, dist, order):
    """Info gain of one branch per category (river's multiway candidate): categories in
    ascending order, each one's classes in ascending order."""
    C = A.cat_w.shape[4]
    for c in range(C):
        order[c] = c
    total = 0.0
    for v in range(A.cat_w.shape[3]):
        for c in range(C):
            total += A.cat_w[t, s, k, v, c]
    n_big = 0
    min_frac = hp[HP_MIN_BRANCH]
    ent = 0.0
    for v in range(A.cat_w.shape[3]):
        dw = 0.0
        for c in range(C):
            dist[c] = A.cat_w[t, s, k, v, c]
            dw += dist[c]
        if dw <= 0.0:
            continue
        if total > 0.0 and dw / total > min_frac:
            n_big += 1
        ent += dw * _entropy(dist, order, C)
    if n_big < 2:
        return _NEG_INF
    return pre_entropy - ent / total


@kernel
def _best_nominal(A, hp, t, s, k, pre_entropy, lhs, rhs, order):
    """Best split of nominal feature index ``k`` (river's ``NominalSplitterClassif``): the
    multiway split first (``v = -1``), then each binary ``x[f] == v`` in the value set's order;
    a later one wins only with a strictly higher merit."""
    best = _multiway_merit(A, hp, t, s, k, pre_entropy, lhs, order)
    best_v = -1.0
    off, mask = _set_order(A, t, s, k)
    for i in range(mask + 1):
        v = A.set_tab[t, off + i]
        if v < 0:
            continue
        _nominal_dist(A, t, s, k, v, lhs, rhs)
        merit = _split_merit(A, hp, t, s, pre_entropy, lhs, rhs)
        if merit > best:
            best = merit
            best_v = float(v)
    return best, best_v


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
    """Turn leaf ``node`` into the branch ``x[f] <= sv`` (nominal ``f``: ``x[f] == sv``) with
    two fresh children."""
    k = A.nom_index[t, f]
    if k >= 0 and sv < 0.0:
        _split_multiway(A, t, node, s, f, k, lhs, order)
        return
    if k >= 0:
        _nominal_dist(A, t, s, k, int(sv), lhs, rhs)
        ns = A.n_nseen[t, s]
        for j in range(ns):
            order[j] = A.nseen[t, s, j]
    else:
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
def _new_leaf(A, t, node, cs, depth):
    A.feature[t, node] = -1
    A.threshold[t, node] = 0.0
    A.left[t, node] = -1
    A.right[t, node] = -1
    A.depth[t, node] = depth
    A.slot[t, node] = cs


@kernel
def _split_multiway(A, t, node, s, f, k, dist, order):
    """Turn leaf ``node`` into a multiway branch on nominal feature index ``k``: one child per
    category the slot has seen, in ascending order, each starting with that category's class
    weights (classes ascending, as river sorts them); the first child keeps slot ``s``."""
    C = A.cat_w.shape[4]
    V = A.cat_w.shape[3]
    for c in range(C):
        order[c] = c
    m = A.n_mw[t]
    A.n_mw[t] += 1
    for v in range(V):
        A.mw_child[t, m, v] = -1
        A.mw_order[t, m, v] = -1
    depth = A.depth[t, node] + 1
    first = -1
    n = 0
    for v in range(V):
        dw = 0.0
        for c in range(C):
            dw += A.cat_w[t, s, k, v, c]
        if dw <= 0.0:
            continue
        child = A.n_nodes[t] + n
        A.mw_child[t, m, v] = child
        A.mw_order[t, m, n] = child
        n += 1
        if first < 0:
            first = v  # slot s is read for every later child: the first one is built last
            continue
        cs = A.n_leaves[t]
        A.n_leaves[t] += 1
        for c in range(C):
            w = A.cat_w[t, s, k, v, c]
            dist[c] = w if w > 0.0 else -1.0
        _init_child(A, t, cs, dist, order, C)
        _new_leaf(A, t, child, cs, depth)
    for c in range(C):
        w = A.cat_w[t, s, k, first, c]
        dist[c] = w if w > 0.0 else -1.0
    _init_child(A, t, s, dist, order, C)
    _new_leaf(A, t, A.n_nodes[t], s, depth)
    A.mw_n[t, m] = n
    A.feature[t, node] = f
    A.threshold[t, node] = 0.0
    A.left[t, node] = _MULTIWAY
    A.right[t, node] = m
    A.slot[t, node] = -1
    A.n_nodes[t] += n


@kernel
def _grow_path(A, hp, t, x):
    """The leaf where tree ``t`` learns ``x``: as :func:`walk`, but a multiway branch without a
    child for ``x``'s category gets a new empty leaf for it (river's ``add_child``), room
    permitting (else ``x`` takes the most common path)."""
    node = 0
    while A.feature[t, node] >= 0:
        f = A.feature[t, node]
        if A.left[t, node] == _MULTIWAY:
            m = A.right[t, node]
            v = int(x[f])
            child = A.mw_child[t, m, v]
            if child < 0:
                n = A.n_nodes[t]
                if n + 1 <= hp[HP_MAX_NODES] and n + 1 <= A.feature.shape[1] \
                        and A.n_leaves[t] + 1 <= A.class_w.shape[1]:
                    child = n
                    cs = A.n_leaves[t]
                    _clear_slot(A, t, cs)
                    _new_leaf(A, t, child, cs, A.depth[t, node] + 1)
                    A.mw_child[t, m, v] = child
                    A.mw_order[t, m, A.mw_n[t, m]] = child
                    A.mw_n[t, m] += 1
                    A.n_nodes[t] += 1
                    A.n_leaves[t] += 1
                else:
                    child = _most_common_child(A, t, m)
            node = child
            continue
        if A.nom_index[t, f] >= 0:
            go_left = x[f] == A.threshold[t, node]
        else:
            go_left = x[f] <= A.threshold[t, node]
        if go_left:
            node = A.left[t, node]
        else:
            node = A.right[t, node]
    return node


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
        k = A.nom_index[t, f]
        if k >= 0:
            if A.cat_n[t, s, k] == 0:
                continue  # no splitter for this feature since the slot was emptied
            merit, sv = _best_nominal(A, hp, t, s, k, pre_entropy, lhs, rhs, order)
            named = True  # river's nominal suggestion names its feature even at merit -inf
        else:
            merit, sv = _best_threshold(A, hp, t, s, f, pre_entropy, lhs, rhs)
            named = merit > _NEG_INF
        if merit >= best:  # stable sort: a later candidate wins a tie
            second = best
            best = merit
            best_f = f if named else -1
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
    node, fell_back = walk(A, t, x)
    learn_leaf(A, hp, t, -node - 2 if fell_back else node, x, y, buf, order, np.int64(-2))  # int64: one overload


@kernel(inline=True)
def learn_leaf(A, hp, t, node, x, y, buf, order, nb_argmax):
    """Leaf ``node`` (the one ``x`` reaches) of tree ``t`` learns ``(x, y)``.

    ``nb_argmax`` is the key-order argmax of the leaf's current naive Bayes posterior for ``x``
    when the caller already has it (``-1``: empty posterior), ``-2`` to compute it here.  A
    negative ``node`` (from :func:`predict_tree`) means that ``x`` met a multiway branch without
    a child for its category: the child is grown and learns ``x``.
    """
    if node < 0:
        node = _grow_path(A, hp, t, x)
        nb_argmax = -2
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
        if A.cat_w.shape[2] > 0 and A.n_nseen[t, s] > 0 and _slot_total(A, t, s) > 0.0:
            # river's naive Bayes asks each nominal splitter about every class of positive weight
            # (a defaultdict lookup that inserts the class): those join the splitters' class order
            for j in range(A.n_keys[t, s]):
                c = A.keys[t, s, j]
                if A.class_w[t, s, c] > 0.0 and not _has(A.nseen[t, s], A.n_nseen[t, s], c):
                    A.nseen[t, s, A.n_nseen[t, s]] = c
                    A.n_nseen[t, s] += 1
    if not _has(A.keys[t, s], A.n_keys[t, s], y):
        A.keys[t, s, A.n_keys[t, s]] = y
        A.n_keys[t, s] += 1
    A.class_w[t, s, y] += 1.0
    if not _has(A.seen[t, s], A.n_seen[t, s], y):
        A.seen[t, s, A.n_seen[t, s]] = y
        A.n_seen[t, s] += 1
    if A.cat_w.shape[2] > 0 and not _has(A.nseen[t, s], A.n_nseen[t, s], y):
        A.nseen[t, s, A.n_nseen[t, s]] = y
        A.n_nseen[t, s] += 1
    for f in range(D):
        v = x[f]
        k = A.nom_index[t, f]
        if k >= 0:  # nominal: count the category per class, remember first-seen order
            code = int(v)
            if not _has(A.cat_order[t, s, k], A.cat_n[t, s, k], code):
                A.cat_order[t, s, k, A.cat_n[t, s, k]] = code
                A.cat_n[t, s, k] += 1
            A.cat_w[t, s, k, code, y] += 1.0
            continue
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
        room = A.n_nodes[t] + int(hp[HP_ROOM])
        if room <= hp[HP_MAX_NODES] and room <= A.feature.shape[1]:  # 2nd test: safety net only
            _attempt_split(A, hp, t, node, s, total, buf, order)


@kernel
def needs_room(A, hp):
    """True when some tree below its node cap has no room for one more split."""
    cap = A.feature.shape[1]
    for t in range(A.n_nodes.shape[0]):
        need = A.n_nodes[t] + int(hp[HP_ROOM])
        if need > cap and need <= hp[HP_MAX_NODES]:
            return True
    return False


#: the value every entry of a field holds in an empty tree (links and orders -1, the rest 0)
_EMPTY = {name: -1 if name in ("feature", "left", "right", "slot", "nom_index", "cat_order", "nseen", "set_tab",
                               "mw_child", "mw_order") + _ORDER_FIELDS else 0
          for name in TreeArrays._fields}


def _reset_tree(A, t: int) -> None:
    """Tree ``t`` becomes a fresh tree: NumPy slice fills, the state :func:`_reset_tree_kernel`
    leaves (tested equal).  A reset runs when a pool is built or an expert replaced, never per
    event, so compiling a kernel for it would only lengthen a cold start."""
    for name in TreeArrays._fields:
        if name != "nom_index":  # which features are nominal is the pool's, not the tree's
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
    A.n_mw[t] = 0
    for m in range(A.mw_child.shape[1]):
        A.mw_n[t, m] = 0
        for v in range(A.mw_child.shape[2]):
            A.mw_child[t, m, v] = -1
            A.mw_order[t, m, v] = -1
    for i in range(A.set_tab.shape[1]):
        A.set_tab[t, i] = -1
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
    branch = live & (feat >= 0) & (d["left"] != _MULTIWAY)  # multiway rows: see _check_nominal
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


def _check_nominal(d: dict, E: int, D: int, C: int, s_used: int) -> tuple[list[int], int, dict]:
    """The nominal features, codes per feature and nominal arrays of a restored state (none in
    a state of numeric features only); refuses shapes or indices a kernel would misuse."""
    if "nom_index" not in d:
        if (np.asarray(d["left"]) == _MULTIWAY).any():
            raise ValueError("tree pool state has multiway branches but no nominal features")
        return [], 0, {"n_mw": np.zeros(E, dtype=np.int64), "mw_child": np.zeros((E, 0, 0), dtype=np.int64),
                       "mw_order": np.zeros((E, 0, 0), dtype=np.int64), "mw_n": np.zeros((E, 0), dtype=np.int64),
                       "nom_index": np.full((E, D), -1, dtype=np.int64), "cat_w": np.zeros((E, s_used, 0, 0, C)),
                       "cat_order": np.zeros((E, s_used, 0, 0), dtype=np.int64),
                       "cat_n": np.zeros((E, s_used, 0), dtype=np.int64), "nseen": np.full((E, s_used, C), -1),
                       "n_nseen": np.zeros((E, s_used), dtype=np.int64), "set_tab": np.zeros((E, 16), dtype=np.int64)}
    nom = {name: np.asarray(d[name]) for name in _NOMINAL_FIELDS}
    idx, cat_w = nom["nom_index"], nom["cat_w"]
    if idx.shape != (E, D) or idx.dtype.kind != "i" or cat_w.ndim != 5 or cat_w.dtype.kind != "f":
        raise ValueError("tree pool state has malformed nominal arrays")
    Dn, V = cat_w.shape[2], cat_w.shape[3]
    nominal = [int(f) for f in np.flatnonzero(idx[0] >= 0)] if E else []
    want = np.full(D, -1)
    want[nominal] = np.arange(len(nominal))
    if (idx != want[None, :]).any() or len(nominal) != Dn or cat_w.shape != (E, s_used, Dn, V, C):
        raise ValueError("tree pool state has inconsistent nominal feature indices")
    order, n = nom["cat_order"], nom["cat_n"]
    if order.shape != (E, s_used, Dn, V) or n.shape != (E, s_used, Dn) or order.dtype.kind != "i" \
            or n.dtype.kind != "i" or (n < 0).any() or (n > V).any():
        raise ValueError("tree pool state has malformed nominal category orders")
    used = np.arange(V)[None, None, None, :] < n[..., None]
    if ((order < 0) | (order >= V))[used].any():
        raise ValueError("tree pool state has nominal categories outside [0, n_values)")
    ns, nn = nom["nseen"], nom["n_nseen"]
    if ns.shape != (E, s_used, C) or nn.shape != (E, s_used) or ns.dtype.kind != "i" or nn.dtype.kind != "i" \
            or (nn < 0).any() or (nn > C).any():
        raise ValueError("tree pool state has malformed nominal class orders")
    if ((ns < 0) | (ns >= C))[np.arange(C)[None, None, :] < nn[..., None]].any():
        raise ValueError("tree pool state has nominal class orders outside [0, n_classes)")
    n_mw, child, order_mw, mw_n = nom["n_mw"], nom["mw_child"], nom["mw_order"], nom["mw_n"]
    m_used = child.shape[1] if child.ndim == 3 else -1
    if n_mw.shape != (E,) or child.shape != (E, m_used, V) or order_mw.shape != (E, m_used, V) \
            or mw_n.shape != (E, m_used) or any(a.dtype.kind != "i" for a in (n_mw, child, order_mw, mw_n)) \
            or (n_mw < 0).any() or (n_mw > m_used).any() or (mw_n < 0).any() or (mw_n > V).any():
        raise ValueError("tree pool state has malformed multiway branches")
    nn = d["n_nodes"][:, None, None]
    live = np.arange(m_used)[None, :, None] < n_mw[:, None, None]
    if (((child < -1) | (child >= nn)) & live).any() or \
            (((order_mw < 0) | (order_mw >= nn)) & live & (np.arange(V)[None, None, :] < mw_n[..., None])).any():
        raise ValueError("tree pool state has multiway children outside their tree")
    multi = d["left"] == _MULTIWAY
    n_live = np.arange(d["left"].shape[1])[None, :] < d["n_nodes"][:, None]
    rows = np.where(multi, d["right"], 0)
    if ((rows < 0) | (rows >= n_mw[:, None]))[multi & n_live].any() \
            or (idx[np.arange(E)[:, None], np.maximum(d["feature"], 0)] < 0)[multi & n_live].any():
        raise ValueError("tree pool state has multiway branches on numeric features or missing rows")
    for e, node in zip(*np.nonzero(multi & n_live)):  # children come after their branch: no loops
        m = rows[e, node]
        kids = child[e, m]
        if (kids[kids >= 0] <= node).any() or (order_mw[e, m, :mw_n[e, m]] <= node).any():
            raise ValueError("tree pool state has multiway children before their branch")
    nom["set_tab"] = np.zeros((E, 16 * max(V, 1)), dtype=np.int64)
    return nominal, V, nom


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
    def n_nominal(self) -> int:
        """How many features are nominal (categorical codes)."""
        return self.arrays.cat_w.shape[2]

    @property
    def n_values(self) -> int:
        """Codes a nominal feature may take: ``[0, n_values)``."""
        return self.arrays.cat_w.shape[3]

    def nominal_features(self) -> list[int]:
        """Indices of the nominal features."""
        return list(self._nominal)

    @property
    def capacity(self) -> int:
        """Node capacity shared by all trees (grows by doubling up to the cap)."""
        return self.arrays.feature.shape[1]

    def _bytes_for(self, n_nodes: int, n_features: int, n_classes: int) -> int:
        arrays = getattr(self, "arrays", None)
        slots = n_nodes if arrays is not None and arrays.cat_w.shape[2] else n_nodes // 2 + 1
        per_slot = 8 * (len(_SLOT_FIELDS) + (1 + len(_ORDER_FIELDS)) * n_classes
                        + (len(_GAUSS_FIELDS) + len(_CACHE_FIELDS)) * n_features * n_classes)
        if arrays is not None and arrays.cat_w.shape[2]:
            Dn, V = arrays.cat_w.shape[2], arrays.cat_w.shape[3]
            # nominal statistics, class order, and one multiway row per node (slots = nodes here)
            per_slot += 8 * (Dn * (1 + V * (n_classes + 1)) + n_classes + 1 + 2 * V + 1)
        fixed = 8 * (n_features + 1)  # nom_index and n_mw
        if arrays is not None and arrays.cat_w.shape[2]:
            fixed += 8 * 16 * arrays.cat_w.shape[3]  # set_tab scratch
        return 8 * len(_TREE_FIELDS) + fixed + 8 * len(_NODE_FIELDS) * n_nodes + per_slot * slots

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
        # nodes one split may add: 2, or one per category for a multiway split
        hp[HP_ROOM] = max(2, self.n_values) if self.n_nominal else 2

    def _alloc(self, E: int, D: int, C: int, N: int, old: TreeArrays | None = None,
               nominal: list[int] | None = None, V: int | None = None) -> None:
        """(Re)allocate every array at ``E`` trees, ``D`` features, ``C`` classes, ``N`` nodes,
        copying the overlapping part of ``old``; new entries are zero (nodes: empty).
        ``nominal`` (the nominal features, default: unchanged) and ``V`` (codes per nominal
        feature) size the nominal statistics."""
        if nominal is None:
            nominal = self._nominal if old is not None else []
        L = N if nominal else N // 2 + 1
        M = N if nominal else 0  # a multiway branch may have a single child: up to N rows
        if V is None:
            V = old.cat_w.shape[3] if old is not None else 0
        Dn = len(nominal)
        T = 8 * V if nominal else 0
        shapes = {"nom_index": (E, D), "cat_w": (E, L, Dn, V, C), "cat_order": (E, L, Dn, V),
                  "cat_n": (E, L, Dn), "nseen": (E, L, C), "n_nseen": (E, L), "set_tab": (E, 2 * T),
                  "n_mw": (E,), "mw_child": (E, M, V), "mw_order": (E, M, V), "mw_n": (E, M)}
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
            if name == "nom_index":
                for k, f in enumerate(nominal):
                    a[:, f] = k
                fields[name] = a
                continue
            if old is not None:
                src = getattr(old, name)
                a[tuple(slice(0, min(m, k)) for m, k in zip(a.shape, src.shape))] = \
                    src[tuple(slice(0, min(m, k)) for m, k in zip(a.shape, src.shape))]
            fields[name] = a
        self.arrays = TreeArrays(**fields)
        self._nominal = list(nominal)
        self._refresh_hp()

    def _ensure_room(self) -> None:
        """Grow the node capacity so that every tree below its cap can split once more."""
        if needs_room(self.arrays, self.hp):
            need = int(self.arrays.n_nodes.max()) + int(self.hp[HP_ROOM])
            N = _capacity_ladder(need, int(self.hp[HP_MAX_NODES]))
            self._alloc(self.n_trees, self.n_features, self.n_classes, N, self.arrays)

    def add_features(self, k: int, nominal: list[bool] | None = None, n_values: int = 0) -> None:
        """Append ``k`` features (unseen so far: their statistics start empty everywhere).

        ``nominal`` (``k`` flags, default all False) marks the new features that are nominal:
        their values are integer codes in ``[0, n_values)`` and they split as river's nominal
        attributes (binary ``x[f] == v``).  ``n_values`` may only grow.
        """
        if not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"add_features needs a non-negative int, got {k!r}")
        flags = [False] * int(k) if nominal is None else [bool(v) for v in nominal]
        if len(flags) != k:
            raise ValueError(f"add_features: {len(flags)} nominal flags for {k} features")
        if any(flags) and int(n_values) < 1:
            raise ValueError(f"nominal features need n_values >= 1, got {n_values!r}")
        if k:
            D = self.n_features
            nominal_now = self.nominal_features() + [D + i for i, nom in enumerate(flags) if nom]
            V = max(self.n_values, int(n_values)) if nominal_now else self.n_values
            self._alloc(self.n_trees, D + int(k), self.n_classes, self.capacity, self.arrays, nominal_now, V)

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
        if self._nominal:
            self.check_codes(xv[None, :])
        return xv

    def check_codes(self, X: np.ndarray) -> None:
        """Nominal columns of rows ``X`` must hold integer codes in ``[0, n_values)`` (the
        kernels index with them)."""
        if self._nominal:
            cols = X[:, self._nominal]
            if not ((cols >= 0) & (cols < self.n_values) & (cols == np.floor(cols))).all():
                raise ValueError(f"nominal features must hold integer codes in [0, {self.n_values})")

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
        if self.n_nominal:
            m_used = int(a.n_mw.max()) if self.n_trees else 0
            for name in _NOMINAL_FIELDS:
                arr = getattr(a, name)
                if name in ("mw_child", "mw_order", "mw_n"):
                    arr = arr[:, :m_used]
                elif name not in ("nom_index", "n_mw"):
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
        nominal, V, nom = _check_nominal(d, E, D, C, s_used)
        N = _capacity_ladder(max(n_used + 2, 1), max(int(pool.hp[HP_MAX_NODES]), n_used))
        stub = TreeArrays(**{name: np.asarray(d[name]) if name in _SAVED_FIELDS
                             else nom.get(name, np.zeros((E, s_used, D, C))) for name in TreeArrays._fields})
        pool._alloc(E, D, C, N, stub, nominal, V)
        refresh_caches(pool.arrays)
        return pool


inner_only(find_leaf, _has, _slot_total, _mc_proba, _first_max, _nb_proba, _clear_gaussians, _clear_slot,
           _refresh_cache, _entropy, _post_split, _side_weight, _best_threshold, _init_child, _split_leaf,
           _attempt_split, learn_leaf, _most_common_child, walk, _set_insert, _set_order, _nominal_dist,
           _split_merit, _multiway_merit, _best_nominal, _new_leaf, _split_multiway, _grow_path)
