"""River's Hoeffding tree as a streammoe expert, with an exact snapshot that never uses pickle.

Why a hand-written snapshot: river objects are normally saved with pickle, which executes code on
load; streammoe stores state in shared stores (Redis, files), so a blob must be plain data.  The
snapshot walks the whole object graph of ``river.tree.HoeffdingTreeClassifier`` (0.26.1 layout)
into numeric arrays plus a small JSON header and rebuilds the same graph from river's own classes.
Restoring is exact: every float is stored as float64 and every dict keeps its insertion order,
because river iterates those dicts when it sums Naive-Bayes log-likelihoods and breaks ties between
equally good split candidates, so a different order would change later predictions.

Every object kind's attribute set is checked when saving and when loading; a river release that
adds or renames state therefore fails loudly instead of restoring a silently different tree.

Categorical features arrive as integer codes in the columns named by :meth:`RiverTreeExpert.set_nominal`;
the tree gets them as river nominal attributes (``nominal_attributes``; river's default multiway
and binary ``x[f] == v`` candidates, the same rules as the array engine).  A nominal splitter's set of values is
restored by adding its values in their saved iteration order: the same order whenever no two
codes collide in the set's hash table (codes below its size, 8 or more), which covers small
category counts; beyond that a restored tree may break a tie between equally good values
differently.
"""
from __future__ import annotations

import operator
from typing import Any

import numpy as np
import river
from river.proba import Gaussian
from river.stats import Mean, Var
from river.tree import HoeffdingTreeClassifier
from river.tree.nodes.branch import NominalBinaryBranch, NominalMultiwayBranch, NumericBinaryBranch
from river.tree.nodes.htc_nodes import LeafMajorityClass, LeafNaiveBayes, LeafNaiveBayesAdaptive
from river.tree.splitter import GaussianSplitter
from river.tree.splitter.nominal_splitter_classif import NominalSplitterClassif

from streammoe.state.codec import StateFormatError, pack_arrays, pack_json, unpack_arrays, unpack_json

LAYOUT = "river-ht/1"

#: node kind codes in the ``kind`` array; leaf codes index ``_LEAF_TYPES``
_LEAF_TYPES = (LeafMajorityClass, LeafNaiveBayes, LeafNaiveBayesAdaptive)
_NBA = 2
_BRANCH = 3
_NOMINAL_BRANCH = 4
_MULTIWAY_BRANCH = 5

#: the instance attributes river 0.26.1 gives each object kind (the whole state we save)
_LEAF_ATTRS = frozenset({"stats", "depth", "splitter", "splitters", "_disabled_attrs", "_last_split_attempt_at"})
_NBA_ATTRS = _LEAF_ATTRS | {"_mc_correct_weight", "_nb_correct_weight"}
_BRANCH_ATTRS = frozenset({"stats", "children", "feature", "threshold", "depth"})
_SPLITTER_ATTRS = frozenset({"_min_per_class", "_max_per_class", "_att_dist_per_class", "n_splits"})
_GAUSS_ATTRS = frozenset({"seed", "_rng", "_var"})
_VAR_ATTRS = frozenset({"ddof", "mean", "_S"})
_MEAN_ATTRS = frozenset({"n", "_mean"})
_NOM_BRANCH_ATTRS = frozenset({"stats", "children", "feature", "value", "depth"})
_MULTIWAY_ATTRS = frozenset({"stats", "children", "feature", "depth", "_mapping", "_r_mapping"})
_NOM_SPLITTER_ATTRS = frozenset({"_total_weight_observed", "_missing_weight_observed", "_att_dist_per_class",
                                 "_att_values"})
#: tree attributes holding objects; every other tree attribute must be a JSON scalar
_TREE_OBJECTS = frozenset({"_root", "splitter", "classes", "nominal_attributes"})
#: the float arrays, in the order that numbers them for ``alias`` rows
_FLOAT_ARRAYS = ("stats_val", "br_threshold", "lf_last", "lf_nba", "g_float")
#: leaf flag bits
_ACTIVE, _LAST_INT = 1, 2
#: constructor options that would put non-numeric splitters (unsupported layout) into the tree
_REFUSED_KWARGS = frozenset({"splitter", "nominal_attributes"})


def _river_constants() -> tuple[float, ...]:
    """The float objects river itself puts into many nodes, found by asking river, not its source.

    A leaf's first weight for a class is the ``w=1.0`` default of ``learn_one`` and the NBA
    counters start as one shared ``0.0``; a restored tree must reuse these very objects.
    """
    probe = HoeffdingTreeClassifier()
    probe.learn_one({}, 0)
    nba = LeafNaiveBayesAdaptive({}, 0, None)
    return probe._root.stats[0], nba._mc_correct_weight


_RIVER_CONSTANTS = _river_constants()


def _layout(obj: Any, expected: frozenset, what: str) -> None:
    got = set(vars(obj))
    if got != expected:
        raise StateFormatError(
            f"unknown river layout for {what} (river {river.__version__}): "
            f"unexpected {sorted(got - expected)}, missing {sorted(expected - got)}"
        )


def _typed(value: Any, kind: type, what: str) -> Any:
    """Only exact Python ``int``/``float`` round-trip bit for bit (numpy scalars behave differently)."""
    if type(value) is not kind:
        raise StateFormatError(f"{what} is {type(value).__name__}, expected {kind.__name__}")
    return value


def _features(x: np.ndarray, nominal: list | None = None) -> dict[int, float]:
    """Dense vector -> river's feature dict; ``tolist`` keeps state in plain Python floats;
    ``nominal`` columns become ``int`` category codes."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"x must be a 1-D feature vector, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"x has non-finite values at positions {np.flatnonzero(~np.isfinite(arr)).tolist()}")
    d = dict(enumerate(arr.tolist()))
    for j in nominal or ():
        if j < arr.size:
            d[j] = int(d[j])
    return d


class RiverTreeExpert:
    """One ``river`` Hoeffding tree behind the :class:`~streammoe.experts.base.Expert` protocol.

    ``binary=True`` makes a one-vs-rest expert for task mode: labels must be 0 or 1.
    """

    kind = "river-ht"

    def __init__(self, grace_period: int = 50, delta: float = 1e-7, binary: bool = False, **tree_kwargs: Any):
        refused = _REFUSED_KWARGS & set(tree_kwargs)
        if refused:
            raise ValueError(f"{sorted(refused)} not supported: experts see dense numeric features "
                             "(Gaussian splitters)")
        for k, v in tree_kwargs.items():
            if v is not None and not isinstance(v, (bool, int, float, str)):
                raise TypeError(f"tree option {k}={v!r} must be a plain scalar so it can be stored as JSON")
        self.frozen = False
        self.binary = bool(binary)
        self._params = {"grace_period": grace_period, "delta": delta, "binary": self.binary, **tree_kwargs}
        self.tree = HoeffdingTreeClassifier(grace_period=grace_period, delta=delta, **tree_kwargs)

    def set_nominal(self, columns: list[int]) -> None:
        """Columns holding integer category codes: river nominal attributes from now on."""
        self.tree.nominal_attributes = sorted(int(j) for j in columns) or None

    # -- Expert protocol ---------------------------------------------------------------------------
    def predict_proba(self, x: np.ndarray, n_classes: int) -> np.ndarray:
        out = np.zeros(operator.index(n_classes), dtype=np.float64)
        for c, p in self.tree.predict_proba_one(_features(x, self.tree.nominal_attributes)).items():
            if c >= out.size:
                raise ValueError(f"tree knows class {c} but only n_classes={out.size} were asked for")
            out[c] = p
        return out

    def learn(self, x: np.ndarray, y: int) -> None:
        if self.frozen:
            return
        label = operator.index(y)  # rejects floats/strings with a TypeError naming the type
        if label < 0 or (self.binary and label > 1):
            raise ValueError(f"label {label} out of range for a {'binary' if self.binary else 'multi-class'} expert")
        self.tree.learn_one(_features(x, self.tree.nominal_attributes), label)

    def to_state(self) -> bytes:
        meta, arrays = _encode(self.tree)
        meta.update(layout=LAYOUT, river=river.__version__, params=self._params, frozen=self.frozen)
        arrays["meta"] = np.frombuffer(pack_json(meta), dtype=np.uint8)
        return pack_arrays(arrays)

    @classmethod
    def from_state(cls, blob: bytes) -> "RiverTreeExpert":
        arrays = unpack_arrays(blob)
        try:
            meta = unpack_json(arrays.pop("meta").tobytes())
            if meta.get("layout") != LAYOUT:
                raise StateFormatError(f"unknown river-ht state layout {meta.get('layout')!r} (expected {LAYOUT!r})")
            params = dict(meta["params"])
            expert = cls(params.pop("grace_period"), params.pop("delta"), params.pop("binary"), **params)
            expert.frozen = bool(meta["frozen"])
            _decode(expert.tree, meta, arrays)
        except StateFormatError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise StateFormatError(f"corrupt river-ht state: {type(exc).__name__}: {exc}") from exc
        return expert

    # -- introspection -----------------------------------------------------------------------------
    def n_nodes(self) -> int:
        return self.tree.n_nodes or 0

    def nbytes(self) -> int:
        """Approximate state size: the numeric payload of :meth:`to_state` (no container overhead)."""
        return sum(a.nbytes for a in _encode(self.tree)[1].values())


# -- encoding --------------------------------------------------------------------------------------
def _encode(tree: HoeffdingTreeClassifier) -> tuple[dict, dict[str, np.ndarray]]:
    scalars = {}
    for k, v in vars(tree).items():
        if k in _TREE_OBJECTS:
            continue
        if v is not None and type(v) not in (bool, int, float, str):
            raise StateFormatError(f"unknown river layout: tree attribute {k} holds {type(v).__name__}")
        scalars[k] = v
    if type(tree.splitter) is not GaussianSplitter:
        raise StateFormatError(f"only GaussianSplitter trees are supported, got {type(tree.splitter).__name__}")
    nominal = tree.nominal_attributes
    meta = {
        "tree": scalars,
        "nominal": None if nominal is None else [_typed(j, int, "nominal attribute") for j in nominal],
        "classes": [_typed(c, int, "class label") for c in tree.classes],
        "n_splits": _typed(tree.splitter.n_splits, int, "n_splits"),
    }
    c: dict[str, list] = {k: [] for k in (
        "kind", "depth", "n_stats", "stats_key", "stats_val", "br_feature", "br_threshold",
        "lf_flags", "lf_last", "lf_nba", "lf_n_disabled", "disabled", "lf_n_splitters",
        "sp_feature", "sp_n_splits", "sp_n_classes", "g_int", "g_float",
        "sp_kind", "nom_float", "nom_int", "nom_w", "mw_values")}
    stack = [] if tree._root is None else [tree._root]
    while stack:
        node = stack.pop()
        if type(node) is NumericBinaryBranch:
            _layout(node, _BRANCH_ATTRS, "NumericBinaryBranch")
            c["kind"].append(_BRANCH)
            c["br_feature"].append(_typed(node.feature, int, "split feature"))
            c["br_threshold"].append(_typed(node.threshold, float, "split threshold"))
            stack.extend(reversed(node.children))  # pre-order: left subtree first
        elif type(node) is NominalBinaryBranch:
            _layout(node, _NOM_BRANCH_ATTRS, "NominalBinaryBranch")
            c["kind"].append(_NOMINAL_BRANCH)
            c["br_feature"].append(_typed(node.feature, int, "split feature"))
            c["br_threshold"].append(float(_typed(node.value, int, "split category")))
            stack.extend(reversed(node.children))
        elif type(node) is NominalMultiwayBranch:
            _layout(node, _MULTIWAY_ATTRS, "NominalMultiwayBranch")
            values = list(node._mapping)
            if node._mapping != {v: i for i, v in enumerate(values)} or \
                    node._r_mapping != dict(enumerate(values)) or len(values) != len(node.children):
                raise StateFormatError("a multiway branch's value mapping disagrees with its children")
            c["kind"].append(_MULTIWAY_BRANCH)
            c["br_feature"].append(_typed(node.feature, int, "split feature"))
            c["mw_values"].append(len(values))
            c["mw_values"].extend(_typed(v, int, "category code") for v in values)
            stack.extend(reversed(node.children))
        elif type(node) in _LEAF_TYPES:
            code = _LEAF_TYPES.index(type(node))
            _layout(node, _NBA_ATTRS if code == _NBA else _LEAF_ATTRS, type(node).__name__)
            if node.splitter is not tree.splitter:
                raise StateFormatError("a leaf's splitter prototype is not the tree's own")
            c["kind"].append(code)
            _encode_leaf(node, code, c)
        else:
            raise StateFormatError(f"unknown river layout: node type {type(node).__name__}")
        c["depth"].append(_typed(node.depth, int, "node depth"))
        c["n_stats"].append(len(node.stats))
        c["stats_key"].extend(_typed(k, int, "class label") for k in node.stats)
        c["stats_val"].extend(_typed(v, float, "class weight") for v in node.stats.values())
    ints = {"kind", "depth", "n_stats", "stats_key", "br_feature", "lf_flags", "lf_n_disabled", "disabled",
            "lf_n_splitters", "sp_feature", "sp_n_splits", "sp_n_classes", "g_int", "sp_kind", "nom_int",
            "mw_values"}
    arrays = {k: np.asarray(v, dtype=np.int64 if k in ints else np.float64) for k, v in c.items()}
    arrays["alias"] = _float_aliases(c)
    return meta, arrays


def _float_aliases(c: dict[str, list]) -> np.ndarray:
    """Rows ``(array, index, source array, source index)`` for floats that are one shared object.

    River sometimes stores one float object in several places (a class's first value is both its
    min and its max) or stores its own constants (see :func:`_river_constants`).  Its memory
    heuristic (``_estimate_model_size``) counts objects by identity, so the restored graph shares
    the same objects to keep those estimates, and hence the state, bit-identical.  Source array
    ``-1`` means river constant number ``source index``.
    """
    first: dict[int, tuple[int, int]] = {id(v): (-1, k) for k, v in enumerate(_RIVER_CONSTANTS)}
    rows = []
    for code, name in enumerate(_FLOAT_ARRAYS):
        for i, v in enumerate(c[name]):
            src = first.setdefault(id(v), (code, i))
            if src != (code, i):
                rows.append((code, i, *src))
    return np.asarray(rows, dtype=np.int32).reshape(-1, 4)


def _encode_leaf(leaf: LeafMajorityClass, code: int, c: dict[str, list]) -> None:
    last = leaf._last_split_attempt_at
    if type(last) not in (int, float):
        raise StateFormatError(f"last split attempt weight is {type(last).__name__}")
    c["lf_flags"].append((_ACTIVE if leaf.splitters is not None else 0) | (_LAST_INT if type(last) is int else 0))
    c["lf_last"].append(float(last))
    if code == _NBA:
        c["lf_nba"].extend([_typed(leaf._mc_correct_weight, float, "NBA MC weight"),
                            _typed(leaf._nb_correct_weight, float, "NBA NB weight")])
    c["lf_n_disabled"].append(len(leaf._disabled_attrs))
    c["disabled"].extend(_typed(a, int, "disabled feature") for a in leaf._disabled_attrs)
    splitters = leaf.splitters or {}
    c["lf_n_splitters"].append(len(splitters))
    for feature, sp in splitters.items():
        if type(sp) is NominalSplitterClassif:
            c["sp_kind"].append(1)
            c["sp_feature"].append(_typed(feature, int, "splitter feature"))
            _encode_nominal(sp, c)
            continue
        if type(sp) is not GaussianSplitter:
            raise StateFormatError(f"unknown river layout: splitter type {type(sp).__name__}")
        c["sp_kind"].append(0)
        _layout(sp, _SPLITTER_ATTRS, "GaussianSplitter")
        classes = list(sp._att_dist_per_class)
        if list(sp._min_per_class) != classes or list(sp._max_per_class) != classes:
            raise StateFormatError("GaussianSplitter min/max/estimator dicts disagree on class order")
        c["sp_feature"].append(_typed(feature, int, "splitter feature"))
        c["sp_n_splits"].append(_typed(sp.n_splits, int, "n_splits"))
        c["sp_n_classes"].append(len(classes))
        for k in classes:
            g = sp._att_dist_per_class[k]
            if type(g) is not Gaussian or type(g._var) is not Var or type(g._var.mean) is not Mean:
                raise StateFormatError("unknown river layout: per-class estimator is not Gaussian(Var(Mean))")
            _layout(g, _GAUSS_ATTRS, "Gaussian")
            _layout(g._var, _VAR_ATTRS, "Var")
            _layout(g._var.mean, _MEAN_ATTRS, "Mean")
            if g.seed is not None:
                raise StateFormatError("seeded Gaussian estimators are not supported")
            c["g_int"].extend([_typed(k, int, "class label"), _typed(g._var.ddof, int, "ddof")])
            c["g_float"].extend(_typed(v, float, "Gaussian statistic") for v in (
                sp._min_per_class[k], sp._max_per_class[k], g._var.mean.n, g._var.mean._mean, g._var._S))


def _encode_nominal(sp: NominalSplitterClassif, c: dict[str, list]) -> None:
    """Weights, per-class value dicts (insertion order) and the value set's iteration order."""
    _layout(sp, _NOM_SPLITTER_ATTRS, "NominalSplitterClassif")
    c["nom_float"].extend([_typed(sp._total_weight_observed, float, "nominal total weight"),
                           _typed(sp._missing_weight_observed, float, "nominal missing weight")])
    dist = sp._att_dist_per_class
    c["nom_int"].append(len(dist))
    for label, values in dist.items():
        c["nom_int"].extend([_typed(label, int, "class label"), len(values)])
        for value, w in values.items():
            c["nom_int"].append(_typed(value, int, "category code"))
            c["nom_w"].append(_typed(w, float, "category weight"))
    c["nom_int"].append(len(sp._att_values))
    c["nom_int"].extend(_typed(v, int, "category code") for v in sp._att_values)


# -- decoding --------------------------------------------------------------------------------------
class _Cursor:
    """Sequential reader over one stored array that refuses to run past its end."""

    def __init__(self, arrays: dict[str, np.ndarray], name: str):
        self.name, self.values, self.pos = name, arrays[name].tolist(), 0

    def take(self, n: int) -> list:
        out = self.values[self.pos:self.pos + n]
        if n < 0 or len(out) != n:
            raise StateFormatError(f"river-ht state array {self.name!r} is too short or inconsistent")
        self.pos += n
        return out

    def one(self) -> Any:
        return self.take(1)[0]


def _decode(tree: HoeffdingTreeClassifier, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    scalars = meta["tree"]
    _layout(tree, frozenset(scalars) | _TREE_OBJECTS, "HoeffdingTreeClassifier")
    for k, v in scalars.items():  # keep the constructor's own objects where equal (identity, see above)
        fresh = getattr(tree, k)
        if type(fresh) is not type(v) or fresh != v:
            setattr(tree, k, v)
    tree.splitter.n_splits = meta["n_splits"]
    for label in meta["classes"]:  # one add at a time, like training, so the set has the same shape
        tree.classes.add(int(label))
    if meta.get("nominal") is not None:
        tree.nominal_attributes = [int(j) for j in meta["nominal"]]
    proto = tree.splitter
    _check_fresh_layout(proto)
    for name in ("sp_kind", "nom_float", "nom_int", "nom_w", "mw_values"):  # states saved before categorical features
        arrays.setdefault(name, np.zeros(0))
    cur = {k: _Cursor(arrays, k) for k in arrays}
    for dst, i, src, j in cur.pop("alias").values:  # re-share float objects (see _float_aliases)
        if not (0 <= dst < len(_FLOAT_ARRAYS) and -1 <= src < len(_FLOAT_ARRAYS) and i >= 0 and j >= 0):
            raise StateFormatError(f"invalid float alias row {[dst, i, src, j]}")
        cur[_FLOAT_ARRAYS[dst]].values[i] = _RIVER_CONSTANTS[j] if src == -1 else cur[_FLOAT_ARRAYS[src]].values[j]
    payloads = []  # pre-order; leaves are built now, branches once their children exist
    for kind in cur["kind"].take(len(arrays["kind"])):
        depth = cur["depth"].one()
        n = cur["n_stats"].one()
        stats = dict(zip(cur["stats_key"].take(n), cur["stats_val"].take(n)))
        if kind == _BRANCH:
            payloads.append((NumericBinaryBranch, stats, cur["br_feature"].one(), cur["br_threshold"].one(), depth))
        elif kind == _NOMINAL_BRANCH:
            payloads.append((NominalBinaryBranch, stats, cur["br_feature"].one(), int(cur["br_threshold"].one()),
                             depth))
        elif kind == _MULTIWAY_BRANCH:
            feature = cur["br_feature"].one()
            values = cur["mw_values"].take(cur["mw_values"].one())
            payloads.append((NominalMultiwayBranch, stats, feature, values, depth))
        elif 0 <= kind < _BRANCH:
            payloads.append(_decode_leaf(_LEAF_TYPES[kind](stats, depth, proto), kind, cur))
        else:
            raise StateFormatError(f"unknown node kind code {kind}")
    built: list = []
    for item in reversed(payloads):
        if isinstance(item, tuple):
            n_children = len(item[3]) if item[0] is NominalMultiwayBranch else 2
            if len(built) < n_children:
                raise StateFormatError("river-ht state: a branch has fewer children than it names")
            children = [built.pop() for _ in range(n_children)]
            built.append(item[0](*item[1:], *children))
        else:
            built.append(item)
    if len(built) > 1 or any(c.pos != len(c.values) for c in cur.values()):
        raise StateFormatError("river-ht state has trailing data (node arrays do not form one tree)")
    tree._root = built[0] if built else None


def _check_fresh_layout(proto: GaussianSplitter) -> None:
    """Objects river builds now must have the attributes this layout restores (catches river upgrades)."""
    for leaf_type in _LEAF_TYPES:
        _layout(leaf_type({}, 0, proto), _NBA_ATTRS if leaf_type is LeafNaiveBayesAdaptive else _LEAF_ATTRS,
                leaf_type.__name__)
    _layout(NumericBinaryBranch({}, 0, 0.0, 0, None, None), _BRANCH_ATTRS, "NumericBinaryBranch")
    _layout(GaussianSplitter(), _SPLITTER_ATTRS, "GaussianSplitter")
    g = Gaussian()
    _layout(g, _GAUSS_ATTRS, "Gaussian")
    _layout(g._var, _VAR_ATTRS, "Var")
    _layout(g._var.mean, _MEAN_ATTRS, "Mean")


def _decode_leaf(leaf: LeafMajorityClass, kind: int, cur: dict[str, _Cursor]) -> LeafMajorityClass:
    flags, last = cur["lf_flags"].one(), cur["lf_last"].one()
    leaf._last_split_attempt_at = int(last) if flags & _LAST_INT else last
    if kind == _NBA:
        leaf._mc_correct_weight, leaf._nb_correct_weight = cur["lf_nba"].take(2)
    for a in cur["disabled"].take(cur["lf_n_disabled"].one()):
        leaf._disabled_attrs.add(a)
    n_splitters = cur["lf_n_splitters"].one()
    if not flags & _ACTIVE:
        if n_splitters:
            raise StateFormatError("an inactive leaf carries splitters")
        leaf.splitters = None
        return leaf
    for feature in cur["sp_feature"].take(n_splitters):
        if cur["sp_kind"].pos < len(cur["sp_kind"].values) and cur["sp_kind"].one() == 1:
            leaf.splitters[feature] = _decode_nominal(cur)
            continue
        sp = GaussianSplitter(n_splits=cur["sp_n_splits"].one())
        n_classes = cur["sp_n_classes"].one()
        ints, floats = cur["g_int"].take(2 * n_classes), cur["g_float"].take(5 * n_classes)
        for j in range(n_classes):
            (label, ddof), (lo, hi, n, mean, s) = ints[2 * j:2 * j + 2], floats[5 * j:5 * j + 5]
            g = Gaussian()
            g._var.ddof, g._var._S, g._var.mean.n, g._var.mean._mean = ddof, s, n, mean
            sp._att_dist_per_class[label] = g
            sp._min_per_class[label] = lo
            sp._max_per_class[label] = hi
        leaf.splitters[feature] = sp
    return leaf


def _decode_nominal(cur: dict[str, _Cursor]) -> NominalSplitterClassif:
    sp = NominalSplitterClassif()
    sp._total_weight_observed, sp._missing_weight_observed = cur["nom_float"].take(2)
    ints = cur["nom_int"]
    for _ in range(ints.one()):
        label, n = ints.take(2)
        values = sp._att_dist_per_class[label]
        for value, w in zip(ints.take(n), cur["nom_w"].take(n)):
            values[value] = _RIVER_CONSTANTS[0] if w == 1.0 else w  # river's own w=1.0 (see _river_constants)
    for value in ints.take(ints.one()):
        sp._att_values.add(value)
    return sp
