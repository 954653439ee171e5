"""NumPy's own ``exp`` for float64, callable from compiled (Numba) code.

Why: the router's softmax has always run through ``np.exp``, and NumPy picks a CPU-specific
implementation at import (an AVX-512 one on many machines) that differs from the C library's
``exp`` (Numba's ``math.exp``) in the last bit for a few percent of inputs.  A compiled
per-event step that used ``math.exp`` would route a few events differently from the windowed
path and from earlier results.  So the compiled step calls the very loop ``np.exp`` runs: the
ufunc's ``d->d`` inner-loop function, found through NumPy's public C structure
``PyUFuncObject`` and checked against ``np.exp`` on a sample before it is used.

:func:`exp_loop_address` returns that function's address (0 when it cannot be found or does
not reproduce ``np.exp`` exactly; callers then keep their NumPy path), and :func:`numpy_exp`
(compiled) applies it to a contiguous float64 vector.  The address is a runtime argument, so
the kernels that use it stay cacheable.
"""
from __future__ import annotations

import ctypes
import functools

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..experts.fast_tree import kernel

# PyUFuncObject (numpy/ufuncobject.h): PyObject_HEAD; int nin, nout, nargs; int identity;
# PyUFuncGenericFunction *functions; void **data; int ntypes; int reserved1; const char *name;
_HEAD = ctypes.sizeof(ctypes.c_ssize_t) + ctypes.sizeof(ctypes.c_void_p)
_FUNCTIONS = _HEAD + 4 * ctypes.sizeof(ctypes.c_int)
_NTYPES = _FUNCTIONS + 2 * ctypes.sizeof(ctypes.c_void_p)
_NAME = _NTYPES + 2 * ctypes.sizeof(ctypes.c_int)


@intrinsic
def _call_unary_loop(typingctx, fn, data, src, dst):
    """Call a NumPy inner loop ``fn(char **args, npy_intp *dims, npy_intp *steps, void *data)``
    on two contiguous float64 vectors of equal length (``dst = f(src)``)."""
    sig = types.void(types.intp, types.intp, src, dst)

    def codegen(context, builder, signature, args):
        fn_addr, data_addr, src_v, dst_v = args
        byte_ptr = ir.IntType(8).as_pointer()
        intp = context.get_value_type(types.intp)
        src_a = context.make_array(signature.args[2])(context, builder, src_v)
        dst_a = context.make_array(signature.args[3])(context, builder, dst_v)
        ptrs = cgutils.alloca_once(builder, byte_ptr, size=2)  # entry block: no stack growth in loops
        builder.store(builder.bitcast(src_a.data, byte_ptr), ptrs)
        builder.store(builder.bitcast(dst_a.data, byte_ptr), builder.gep(ptrs, [ir.Constant(intp, 1)]))
        dims = cgutils.alloca_once(builder, intp, size=3)
        builder.store(builder.extract_value(src_a.shape, 0), dims)
        builder.store(ir.Constant(intp, 8), builder.gep(dims, [ir.Constant(intp, 1)]))
        builder.store(ir.Constant(intp, 8), builder.gep(dims, [ir.Constant(intp, 2)]))
        fnty = ir.FunctionType(ir.VoidType(), [byte_ptr.as_pointer(), intp.as_pointer(), intp.as_pointer(),
                                               byte_ptr])
        builder.call(builder.inttoptr(fn_addr, fnty.as_pointer()),
                     [ptrs, dims, builder.gep(dims, [ir.Constant(intp, 1)]), builder.inttoptr(data_addr, byte_ptr)])
        return context.get_dummy_value()

    return sig, codegen


@kernel(inline=True)
def numpy_exp(fn, src, dst):  # pragma: no cover - compiled
    """``dst[:] = np.exp(src)`` through NumPy's loop ``fn`` (an address from :func:`exp_loop_address`;
    contiguous float64 vectors).  The loops ``np.exp`` runs on float64 take no data pointer."""
    if src.shape[0] > 0:
        _call_unary_loop(fn, 0, src, dst)


def _candidates(ufunc: np.ufunc) -> list[int]:
    """Addresses of the ufunc's ``d->d`` loops that take no data pointer, in its type order
    (empty if the layout is not the expected one).  A loop with data (a generic loop calling a C
    function through it) is left out: the kernels call loops without data."""
    base = id(ufunc)
    if ctypes.c_int.from_address(base + _NTYPES).value != ufunc.ntypes:
        return []
    if ctypes.c_char_p.from_address(base + _NAME).value != ufunc.__name__.encode():
        return []
    ptr = ctypes.sizeof(ctypes.c_void_p)
    table = ctypes.c_void_p.from_address(base + _FUNCTIONS).value
    data = ctypes.c_void_p.from_address(base + _FUNCTIONS + ptr).value
    if not table:
        return []
    out = []
    for i, sig in enumerate(ufunc.types):
        if sig == "d->d" and not (data and ctypes.c_void_p.from_address(data + i * ptr).value):
            out.append(ctypes.c_void_p.from_address(table + i * ptr).value or 0)
    return out


@functools.lru_cache(maxsize=1)
def exp_loop_address() -> int:
    """Address of the loop ``np.exp`` runs on float64, verified on a sample; 0 if unavailable."""
    rng = np.random.default_rng(0)
    sample = np.concatenate([rng.uniform(-745.0, 0.0, 4096), rng.uniform(-1.0, 0.0, 4096),
                             [0.0, -0.0, -1e-300, -5e-324, -700.0, -746.0, -np.inf]])
    want = np.exp(sample)
    for fn in _candidates(np.exp):
        if not fn:
            continue
        got = np.empty_like(sample)
        numpy_exp(fn, sample, got)
        small = np.empty(12)  # short vectors take the loop's remainder code: check them too
        numpy_exp(fn, sample[:12], small)
        if np.array_equal(got.view(np.int64), want.view(np.int64)) and \
                np.array_equal(small.view(np.int64), want[:12].view(np.int64)):
            return fn
    return 0
