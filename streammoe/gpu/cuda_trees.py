"""Numba-CUDA kernels for a pool of Hoeffding trees: one GPU thread per tree, events in order.

The tree code is not rewritten for the GPU.  Every ``fast_tree`` kernel is plain arithmetic on
the pool's arrays — no allocation (scratch buffers are passed in), no exceptions, only
``math`` functions that CUDA also has — so the *same Python source* is compiled a second time
with ``numba.cuda.jit(device=True)``: :func:`_device_namespace` clones each function's code
object into a namespace where the names of the functions it calls point at their CUDA
versions.  The per-tree window body (:func:`streammoe.keyed.tree_window.tree_events`) is cloned
the same way.  The math is therefore identical by construction; what can still differ on real
hardware is floating point:

* NVVM contracts ``a * b + c`` into one fused multiply-add by default; the CPU path never
  does.  The kernels are compiled with ``fastmath=False``, without link-time optimisation and
  with ``-fma=0`` handed to libNVVM (:func:`_no_fma`; :data:`FMA_CONTROL` says whether a
  compilation went through it);
* ``log``/``exp``/``erf``/``log2`` come from libdevice on the GPU and from the C library on
  the CPU; both are within an ulp or so, not always the same ulp.

Measured on an H100 (Numba-CUDA 0.30.4, ``benchmarks/results/keyed_gpu.md``): in the checked
windows every tree decision matched the CPU (expert predictions, splits, thresholds, class
weights, node counts), but the running Gaussian moments (Welford mean and M2) differed in the
last bits, and the PTX held as many ``fma.rn.f64`` with ``-fma=0`` as without — the
contraction of that update was not switched off.  Those last bits can flip a near-tie later
(the router's fallback target, an argmax): a 2,048,000-event keyed run gave the same answers
for every event, yet not bit-identical trees and routers at the end; a run before the router
kernel got ``-fma=0`` answered 41 of 4,096,000 events differently.  GPU runs are therefore close
to, not guaranteed identical with, CPU runs.

In the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the kernels run as Python on NumPy scalars
with the C library's math, so simulated results equal the CPU path bit for bit — the test
suite checks that; it proves the GPU code path computes the same algorithm.

:class:`DevicePool` keeps a :class:`~streammoe.experts.fast_tree.TreePool`'s arrays resident
on the device between windows (only events in and per-event results out cross the bus); the
host copy is refreshed on demand and whenever the node capacity must grow (rare: doubling).
"""
from __future__ import annotations

import contextlib
import inspect
import sys
import types

import numpy as np
from numba import cuda
from numba.core.registry import CPUDispatcher

from ..experts import fast_tree
from ..experts.fast_tree import TreeArrays, TreePool
from ..keyed import tree_window
from .backend import is_simulator

__all__ = ["DevicePool", "FMA_CONTROL", "run_trees_cuda", "THREADS_PER_BLOCK"]

THREADS_PER_BLOCK = 64

#: how FMA contraction is switched off in the CUDA kernels: "nvvm -fma=0 (n compilations)",
#: "simulator" (no compiler involved) or why it could not be (entry point not found or not used)
FMA_CONTROL = "simulator"


def _device_namespace() -> dict:
    """``fast_tree``'s namespace with every compiled kernel replaced by a CUDA device twin
    compiled from the same source, plus the window body of :mod:`tree_window`."""
    ns = dict(vars(fast_tree))
    for name, obj in vars(fast_tree).items():
        if isinstance(obj, CPUDispatcher):
            ns[name] = cuda.jit(device=True)(_clone(obj.py_func, ns))
    ns["tree_events"] = cuda.jit(device=True)(_clone(tree_window.tree_events, ns))
    return ns


def _clone(fn, ns: dict):
    return types.FunctionType(fn.__code__, ns, fn.__name__, fn.__defaults__, fn.__closure__)


_NS = _device_namespace()
_tree_events_dev = _NS["tree_events"]


def _jit_options() -> dict:
    """``fastmath=False``, and no link-time optimisation where this Numba-CUDA has the switch:
    with LTO the final code generation happens in nvJitLink, out of reach of the NVVM option
    that keeps multiplies and adds apart."""
    opts = {"fastmath": False}
    try:
        if "lto" in inspect.signature(cuda.jit).parameters:
            opts["lto"] = False
    except (TypeError, ValueError):
        pass
    return opts


def _trees_body(n_nodes, n_leaves, feature, threshold, left, right, depth, slot, last_attempt,
                  mc_correct, nb_correct, n_keys, n_seen, class_w, keys, seen, g_n, g_mean, g_m2,
                  g_min, g_max, g_var, g_hlv, nom_index, cat_w, cat_order, cat_n, nseen, n_nseen, n_mw,
                  mw_child, mw_order, mw_n, set_tab, hp, E, ptr, X, Y, rank, progress, expert_pred, p_true,
                  Pk, P, buf, order, done):  # pragma: no cover - compiled for the device
    t = cuda.grid(1)
    if t < n_nodes.shape[0]:
        A = TreeArrays(n_nodes, n_leaves, feature, threshold, left, right, depth, slot, last_attempt,
                       mc_correct, nb_correct, n_keys, n_seen, class_w, keys, seen, g_n, g_mean, g_m2,
                       g_min, g_max, g_var, g_hlv, nom_index, cat_w, cat_order, cat_n, nseen, n_nseen, n_mw, mw_child,
                       mw_order, mw_n, set_tab)
        k = t // E
        ok = _tree_events_dev(A, hp, t, t - k * E, ptr[k], ptr[k + 1], X, Y, rank, progress,
                              expert_pred, p_true, Pk, P[t], buf[t], order[t])
        done[t] = 1 if ok else 0


_trees_kernel = cuda.jit(**_jit_options())(_trees_body)
#: the same kernel left to NVVM's default contraction (a*b+c fused), for measuring what it changes
_trees_kernel_fma = cuda.jit(**_jit_options())(_clone(_trees_body, globals()))


# ----------------------------------------------------------------------------------- FMA off
_FMA_CALLS = [0]  # compilations that went through the patched entry point


def _nvvm_entry_points() -> list[tuple[object, str, object]]:
    """Every ``(module, "compile_ir", function)`` through which Numba-CUDA may call libNVVM.

    Numba-CUDA can be loaded under more than one module name (``numba.cuda`` redirected to
    ``numba_cuda.numba.cuda``), so every loaded copy of the NVVM module is patched, and every
    module attribute that refers to one of their ``compile_ir`` functions.
    """
    try:
        from numba.cuda.cudadrv import nvvm  # noqa: F401 - makes sure one copy is loaded
    except Exception:
        return []
    originals = {id(m.compile_ir): m.compile_ir for name, m in list(sys.modules.items())
                 if name.endswith("cudadrv.nvvm") and callable(getattr(m, "compile_ir", None))}
    found = []
    for name, m in list(sys.modules.items()):
        if m is None or "cuda" not in name:
            continue
        fn = getattr(m, "compile_ir", None)
        if fn is not None and id(fn) in originals:
            found.append((m, "compile_ir", fn))
    return found


@contextlib.contextmanager
def _no_fma():
    """While this module's kernels compile, ask libNVVM for ``-fma=0`` (no contraction).

    Numba-CUDA exposes only ``fastmath`` (which turns contraction *on*); its NVVM entry point
    ``compile_ir(ir, **options)`` forwards options to libNVVM, so the option is added there for
    the duration of a launch (the first one compiles).  :data:`FMA_CONTROL` records whether a
    compilation really went through the patched entry point.
    """
    global FMA_CONTROL
    points = [] if _is_sim() else _nvvm_entry_points()
    if not points:
        FMA_CONTROL = "simulator" if _is_sim() else "unavailable"
        yield
        return

    def wrap(original):
        def compile_ir(llvmir, **opts):
            if not opts.get("fastmath"):
                opts["fma"] = False
                _FMA_CALLS[0] += 1
            return original(llvmir, **opts)
        return compile_ir

    for mod, attr, fn in points:
        setattr(mod, attr, wrap(fn))
    try:
        yield
    finally:
        for mod, attr, fn in points:
            setattr(mod, attr, fn)
        FMA_CONTROL = f"nvvm -fma=0 ({_FMA_CALLS[0]} compilations)" if _FMA_CALLS[0] else \
            "patched, but no compilation went through it"


def _is_sim() -> bool:
    from .backend import is_simulator

    return is_simulator()


# ----------------------------------------------------------------------------------- pool
class DevicePool:
    """A :class:`TreePool` whose arrays live on the CUDA device between windows.

    ``pool`` stays the owner of the configuration and of the host copy; call :meth:`to_host`
    before reading or saving it (``KeyedDriftMoE`` does), :meth:`to_device` after changing it
    on the host (adding trees, features or classes).
    """

    def __init__(self, pool: TreePool):
        self.pool = pool
        self.arrays = None
        self.hp = None
        self.to_device()

    def to_device(self) -> None:
        if self.pool.n_nominal and not is_simulator():
            # Measured on an H200 (numba-cuda 0.30.4): the multiway-branch kernels stop with
            # CUDA_ERROR_ILLEGAL_ADDRESS (the recursive subtree-weight walk is the suspect); the
            # simulator runs them exactly.  Refuse instead of corrupting the context.
            raise NotImplementedError("trees with nominal (categorical) features do not run on a real CUDA "
                                      "device yet; use device='cpu'")
        self.arrays = TreeArrays(*(cuda.to_device(a) for a in self.pool.arrays))
        self.hp = cuda.to_device(self.pool.hp)
        self._on_host = True

    def to_host(self) -> TreePool:
        """Copy the device arrays into the host pool (in place) and return it."""
        for dev, host in zip(self.arrays, self.pool.arrays):
            dev.copy_to_host(host)
        return self.pool

    def ensure_room(self) -> None:
        """Grow the node capacity (on the host, then back) if a tree below its cap needs room."""
        n_nodes = self.arrays.n_nodes.copy_to_host()
        cap = self.pool.capacity
        need = n_nodes + int(self.pool.hp[fast_tree.HP_ROOM])
        if ((need > cap) & (need <= self.pool.hp[fast_tree.HP_MAX_NODES])).any():
            self.to_host()
            self.pool._ensure_room()
            self.to_device()


def run_trees_cuda(dpool: DevicePool, E: int, ptr, X, Y, rank, expert_pred, p_true, Pk,
                   contract: bool = False) -> int:
    """:func:`streammoe.keyed.tree_window.run_trees_cpu` on the device: one thread per tree.

    The host arrays ``expert_pred``, ``p_true`` and ``Pk`` are filled in place.  Returns the
    number of launches.  ``contract=True`` runs the variant compiled with NVVM's default FMA
    contraction (not CPU-exact; for measurements).
    """
    kernel = _trees_kernel_fma if contract else _trees_kernel
    no_fma = contextlib.nullcontext if contract else _no_fma
    T, C = dpool.pool.n_trees, dpool.pool.n_classes
    d_ptr, d_X, d_Y, d_rank = (cuda.to_device(np.ascontiguousarray(a)) for a in (ptr, X, Y, rank))
    d_ep, d_pt, d_pk = (cuda.to_device(a) for a in (expert_pred, p_true, Pk))  # p_true, Pk: partly written
    d_progress = cuda.to_device(np.zeros(T, dtype=np.int64))
    d_done = cuda.to_device(np.zeros(T, dtype=np.int8))
    d_P = cuda.device_array((T, C))
    d_buf = cuda.device_array((T, 2 * C))
    d_order = cuda.device_array((T, C), dtype=np.int64)
    blocks = max(1, (T + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK)
    launches = 0
    dpool.ensure_room()
    while True:
        A = dpool.arrays
        with no_fma():
            kernel[blocks, THREADS_PER_BLOCK](*A, dpool.hp, E, d_ptr, d_X, d_Y, d_rank, d_progress,
                                              d_ep, d_pt, d_pk, d_P, d_buf, d_order, d_done)
        launches += 1
        if d_done.copy_to_host().all():
            break
        dpool.ensure_room()
    d_ep.copy_to_host(expert_pred)
    d_pt.copy_to_host(p_true)
    d_pk.copy_to_host(Pk)
    return launches
