"""Computes reference values for the op tests with MLX's own Python package.

Writes one safetensors file: for every case, its inputs (`<case>/in<i>`) and the outputs
MLX's Python API gives (`<case>/out<i>`), plus a JSON list of the cases in the metadata
key "cases". tests/ops_reference.rs replays every case through the Rust API and compares.

A case names an op, its parameters, and a "view" per input that the test applies on both
sides before the op (so non-contiguous inputs are covered):
  none | T (swap the last two axes) | S (every other row of axis 0) | B:<shape> (broadcast)

Usage: op_refs.py OUT.safetensors
"""

import json
import sys

import mlx.core as mx
import numpy as np

DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16,
          "int32": mx.int32, "uint32": mx.uint32, "bool": mx.bool_, "uint8": mx.uint8}

rng = np.random.default_rng(1234)
tensors = {}
cases = []


def rand(shape, dtype="float32", lo=-2.0, hi=2.0):
    if dtype in ("int32", "uint32", "uint8"):
        return mx.array(rng.integers(int(max(lo, 0 if dtype != "int32" else lo)), int(hi), size=shape)).astype(DTYPES[dtype])
    if dtype == "bool":
        return mx.array(rng.random(shape) > 0.5)
    return mx.array(rng.uniform(lo, hi, size=shape).astype(np.float32)).astype(DTYPES[dtype])


def view(x, v):
    if v is None or v == "none":
        return x
    if v == "T":
        return mx.swapaxes(x, -1, -2)
    if v == "S":
        return x[::2]
    if v.startswith("B:"):
        return mx.broadcast_to(x, [int(d) for d in v[2:].split(",")])
    raise ValueError(v)


def case(name, op, inputs, fn, params=None, views=None, atol=None, rtol=None):
    """Records a case: `fn` maps the viewed inputs to one array or a list of arrays."""
    views = views or [None] * len(inputs)
    viewed = [view(x, v) for x, v in zip(inputs, views)]
    outs = fn(*viewed)
    if not isinstance(outs, (list, tuple)):
        outs = [outs]
    for i, x in enumerate(inputs):
        tensors[f"{name}/in{i}"] = x
    for i, y in enumerate(outs):
        tensors[f"{name}/out{i}"] = y
    dtype = str(outs[0].dtype).replace("mlx.core.", "")
    tol = {"float32": (1e-5, 1e-4), "float16": (2e-3, 2e-3), "bfloat16": (2e-2, 2e-2)}.get(dtype, (0, 0))
    cases.append({
        "name": name, "op": op, "params": params or {}, "views": [v or "none" for v in views],
        "n_in": len(inputs), "n_out": len(outs),
        "atol": atol if atol is not None else tol[0], "rtol": rtol if rtol is not None else tol[1],
    })


FLOATS = ["float32", "float16", "bfloat16"]

# ---- element-wise unary ----------------------------------------------------------------------
UNARY = {
    "neg": mx.negative, "abs": mx.abs, "exp": mx.exp, "square": mx.square, "sin": mx.sin,
    "cos": mx.cos, "tanh": mx.tanh, "erf": mx.erf, "sigmoid": mx.sigmoid, "floor": mx.floor,
    "ceil": mx.ceil, "sign": mx.sign, "expm1": mx.expm1, "round": mx.round,
    "log": mx.log, "log1p": mx.log1p, "sqrt": mx.sqrt, "rsqrt": mx.rsqrt, "reciprocal": mx.reciprocal,
    "erfinv": mx.erfinv, "stop_gradient": mx.stop_gradient, "copy": mx.array,
}
POSITIVE = {"log", "log1p", "sqrt", "rsqrt", "reciprocal"}
for dt in FLOATS:
    for op, f in UNARY.items():
        lo, hi = (0.1, 3.0) if op in POSITIVE else ((-0.9, 0.9) if op == "erfinv" else (-2.0, 2.0))
        case(f"unary_{op}_{dt}", op, [rand((5, 7), dt, lo, hi)], f)
    # A transposed (non-contiguous) input.
    case(f"unary_exp_T_{dt}", "exp", [rand((6, 4), dt)], mx.exp, views=["T"])
    case(f"unary_tanh_S_{dt}", "tanh", [rand((6, 4), dt)], mx.tanh, views=["S"])
case("unary_logical_not", "logical_not", [rand((4, 5), "bool")], mx.logical_not)
case("unary_isnan", "isnan", [mx.array([0.0, float("nan"), 1.0, float("inf")])], mx.isnan)
case("unary_isinf", "isinf", [mx.array([0.0, float("nan"), 1.0, -float("inf")])], mx.isinf)
case("unary_neg_int32", "neg", [rand((3, 4), "int32", -50, 50)], mx.negative)
case("unary_abs_int32", "abs", [rand((3, 4), "int32", -50, 50)], mx.abs)

# ---- element-wise binary, with broadcasting ----------------------------------------------------
BINARY = {
    "add": mx.add, "sub": mx.subtract, "mul": mx.multiply, "div": mx.divide,
    "maximum": mx.maximum, "minimum": mx.minimum, "equal": mx.equal, "not_equal": mx.not_equal,
    "less": mx.less, "less_equal": mx.less_equal, "greater": mx.greater,
    "greater_equal": mx.greater_equal, "logaddexp": mx.logaddexp, "floor_divide": mx.floor_divide,
    "remainder": mx.remainder,
}
for dt in FLOATS:
    for op, f in BINARY.items():
        b_lo = 0.5 if op in ("div", "floor_divide", "remainder") else -2.0
        case(f"binary_{op}_{dt}", op, [rand((4, 6), dt), rand((4, 6), dt, b_lo, 2.0)], f)
    # Broadcasting: [4,1,6] with [5,1]; row vector; scalar; a transposed operand.
    case(f"binary_add_bcast_{dt}", "add", [rand((4, 1, 6), dt), rand((5, 1), dt)], mx.add)
    case(f"binary_mul_row_{dt}", "mul", [rand((3, 5), dt), rand((5,), dt)], mx.multiply)
    case(f"binary_sub_scalar_{dt}", "sub", [rand((3, 5), dt), rand((), dt)], mx.subtract)
    case(f"binary_mul_T_{dt}", "mul", [rand((5, 3), dt), rand((3, 5), dt)], mx.multiply, views=["T", None])
    case(f"binary_power_{dt}", "power", [rand((3, 4), dt, 0.5, 2.0), rand((3, 4), dt, -1.0, 2.0)], mx.power)
# Mixed dtypes promote as MLX promotes.
case("binary_add_f16_f32", "add", [rand((3, 4), "float16"), rand((3, 4), "float32")], mx.add)
case("binary_add_int32", "add", [rand((3, 4), "int32", -9, 9), rand((4,), "int32", -9, 9)], mx.add)
case("binary_mul_int_float", "mul", [rand((3, 4), "int32", -9, 9), rand((3, 4), "float32")], mx.multiply)
case("binary_logical_and", "logical_and", [rand((3, 4), "bool"), rand((3, 4), "bool")], mx.logical_and)
case("binary_logical_or", "logical_or", [rand((3, 4), "bool"), rand((4,), "bool")], mx.logical_or)
case("binary_less_uint32", "less", [rand((5,), "uint32", 0, 9), rand((5,), "uint32", 0, 9)], mx.less)

# ---- matmul ----------------------------------------------------------------------------------------
for dt in FLOATS:
    case(f"matmul_{dt}", "matmul", [rand((8, 16), dt), rand((16, 12), dt)], mx.matmul)
    case(f"matmul_batched_bcast_{dt}", "matmul", [rand((2, 3, 5, 8), dt), rand((8, 4), dt)], mx.matmul)
    case(f"matmul_T_{dt}", "matmul", [rand((8, 16), dt), rand((12, 16), dt)], mx.matmul, views=[None, "T"])
    case(f"matmul_vec_{dt}", "matmul", [rand((16,), dt), rand((16, 7), dt)], mx.matmul)
case("matmul_large_f32", "matmul", [rand((70, 130)), rand((130, 90))], mx.matmul, rtol=2e-4)
case("addmm_f32", "addmm", [rand((6, 5)), rand((6, 7)), rand((7, 5))],
     lambda c, a, b: mx.addmm(c, a, b, alpha=0.5, beta=2.0), params={"alpha": 0.5, "beta": 2.0})

# ---- reductions ---------------------------------------------------------------------------------
REDUCE = {"sum": mx.sum, "mean": mx.mean, "max": mx.max, "min": mx.min, "prod": mx.prod,
          "logsumexp": mx.logsumexp}
for dt in FLOATS:
    for op, f in REDUCE.items():
        lo, hi = (0.5, 1.5) if op == "prod" else (-2.0, 2.0)
        case(f"reduce_{op}_axis1_{dt}", op, [rand((3, 5, 4), dt, lo, hi)],
             lambda x, f=f: f(x, axis=[1]), params={"axes": [1], "keepdims": False})
        case(f"reduce_{op}_all_{dt}", op, [rand((3, 5), dt, lo, hi)],
             lambda x, f=f: f(x), params={"axes": None, "keepdims": False})
        case(f"reduce_{op}_keep_neg_{dt}", op, [rand((3, 5, 4), dt, lo, hi)],
             lambda x, f=f: f(x, axis=[0, -1], keepdims=True), params={"axes": [0, -1], "keepdims": True})
    case(f"reduce_sum_T_{dt}", "sum", [rand((5, 3), dt)], lambda x: mx.sum(x, axis=[1]),
         params={"axes": [1], "keepdims": False}, views=["T"])
case("reduce_sum_int32", "sum", [rand((4, 6), "int32", -9, 9)], lambda x: mx.sum(x, axis=[1]),
     params={"axes": [1], "keepdims": False})
case("reduce_all", "all", [rand((4, 6), "bool")], lambda x: mx.all(x, axis=[1]), params={"axes": [1], "keepdims": False})
case("reduce_any", "any", [rand((4, 6), "bool")], lambda x: mx.any(x, axis=[0]), params={"axes": [0], "keepdims": False})
for dt in FLOATS:
    case(f"argmax_{dt}", "argmax", [rand((4, 9), dt)], lambda x: mx.argmax(x, axis=1), params={"axis": 1, "keepdims": False})
    case(f"argmin_keep_{dt}", "argmin", [rand((4, 9), dt)], lambda x: mx.argmin(x, axis=0, keepdims=True),
         params={"axis": 0, "keepdims": True})
case("argmax_T", "argmax", [rand((9, 4))], lambda x: mx.argmax(x, axis=-1), params={"axis": -1, "keepdims": False}, views=["T"])

# ---- scans, softmax ---------------------------------------------------------------------------------
SCAN = {"cumsum": mx.cumsum, "cumprod": mx.cumprod, "cummax": mx.cummax, "cummin": mx.cummin,
        "logcumsumexp": mx.logcumsumexp}
for dt in FLOATS:
    for op, f in SCAN.items():
        lo, hi = (0.5, 1.5) if op == "cumprod" else (-2.0, 2.0)
        for rev, inc in [(False, True), (True, True), (False, False)]:
            case(f"scan_{op}_{int(rev)}{int(inc)}_{dt}", op, [rand((3, 7), dt, lo, hi)],
                 lambda x, f=f, rev=rev, inc=inc: f(x, axis=1, reverse=rev, inclusive=inc),
                 params={"axis": 1, "reverse": rev, "inclusive": inc})
    case(f"softmax_{dt}", "softmax", [rand((4, 11), dt, -5, 5)], lambda x: mx.softmax(x, axis=-1),
         params={"axes": [-1], "precise": False})
    case(f"softmax_precise_{dt}", "softmax", [rand((2, 3, 11), dt, -5, 5)], lambda x: mx.softmax(x, axis=-1, precise=True),
         params={"axes": [-1], "precise": True})
case("softmax_axis0_T", "softmax", [rand((5, 4))], lambda x: mx.softmax(x, axis=0), params={"axes": [0], "precise": False}, views=["T"])
case("cumsum_int32", "cumsum", [rand((2, 6), "int32", -5, 5)], lambda x: mx.cumsum(x, axis=1),
     params={"axis": 1, "reverse": False, "inclusive": True})

# ---- selection, conversion ---------------------------------------------------------------------------
for dt in FLOATS:
    case(f"where_{dt}", "where", [rand((4, 5), "bool"), rand((4, 5), dt), rand((5,), dt)], mx.where)
    case(f"clip_{dt}", "clip", [rand((4, 5), dt), rand((), dt, -1, -0.5), rand((5,), dt, 0.2, 1)], mx.clip)
for src in ["float32", "float16", "bfloat16", "int32", "bool", "uint8"]:
    for dst in ["float32", "float16", "bfloat16", "int32", "bool", "uint32"]:
        if src != dst:
            case(f"astype_{src}_{dst}", "astype", [rand((3, 5), src, -40, 40)],
                 lambda x, dst=dst: x.astype(DTYPES[dst]), params={"dtype": dst}, atol=0, rtol=0)
case("tril", "tril", [rand((5, 5))], lambda x: mx.tril(x, -1), params={"k": -1})
case("triu", "triu", [rand((4, 6))], lambda x: mx.triu(x, 1), params={"k": 1})

def _slice_update(x, u):
    y = mx.array(x)
    y[1:5:2, :] = u
    return y


# ---- shape and indexing ---------------------------------------------------------------------------------
for dt in ["float32", "bfloat16", "int32"]:
    case(f"reshape_{dt}", "reshape", [rand((4, 6), dt)], lambda x: x.reshape(2, -1, 3), params={"shape": [2, -1, 3]})
    case(f"reshape_T_{dt}", "reshape", [rand((4, 6), dt)], lambda x: x.reshape(-1), params={"shape": [-1]}, views=["T"])
    case(f"transpose_{dt}", "transpose", [rand((2, 3, 4), dt)], lambda x: mx.transpose(x, [2, 0, 1]),
         params={"axes": [2, 0, 1]})
    case(f"concatenate_{dt}", "concatenate", [rand((2, 3), dt), rand((4, 3), dt), rand((3, 1), dt)],
         lambda a, b, c: mx.concatenate([a, b, c], axis=0), params={"axis": 0}, views=[None, None, "B:3,3"])
    case(f"stack_{dt}", "stack", [rand((2, 3), dt), rand((3, 2), dt)], lambda a, b: mx.stack([a, b], axis=1),
         params={"axis": 1}, views=[None, "T"])
    case(f"slice_{dt}", "slice", [rand((6, 7, 5), dt)], lambda x: x[1:5:2, ::3, 2:4],
         params={"start": [1, 0, 2], "stop": [5, 7, 4], "strides": [2, 3, 1]})
    case(f"slice_update_{dt}", "slice_update", [rand((6, 5), dt), rand((2, 5), dt)],
         _slice_update,
         params={"start": [1, 0], "stop": [5, 5], "strides": [2, 1]})
    case(f"take_{dt}", "take", [rand((5, 4), dt), mx.array([[4, 0], [2, 2]], dtype=mx.int32)],
         lambda x, i: mx.take(x, i, axis=0), params={"axis": 0})
    case(f"take_along_axis_{dt}", "take_along_axis", [rand((3, 6), dt), mx.array([[5, 0], [1, 1], [2, 4]], dtype=mx.int32)],
         lambda x, i: mx.take_along_axis(x, i, axis=1), params={"axis": 1})
    case(f"put_along_axis_{dt}", "put_along_axis",
         [rand((3, 6), dt), mx.array([[5], [1], [2]], dtype=mx.int32), rand((3, 1), dt)],
         lambda x, i, v: mx.put_along_axis(x, i, v, axis=1), params={"axis": 1})
case("swapaxes", "swapaxes", [rand((2, 3, 4))], lambda x: mx.swapaxes(x, 0, 2), params={"axis1": 0, "axis2": 2})
case("expand_dims", "expand_dims", [rand((3, 4))], lambda x: mx.expand_dims(x, [0, 2]), params={"axes": [0, 2]})
case("squeeze", "squeeze", [rand((3, 1, 4, 1))], lambda x: mx.squeeze(x, [1]), params={"axes": [1]})
case("flatten", "flatten", [rand((2, 3, 4, 5))], lambda x: mx.flatten(x, 1, 2), params={"start": 1, "end": 2})
case("broadcast_to", "broadcast_to", [rand((3, 1))], lambda x: mx.broadcast_to(x, [2, 3, 4]), params={"shape": [2, 3, 4]})
case("repeat", "repeat", [rand((2, 3))], lambda x: mx.repeat(x, 3, axis=1), params={"repeats": 3, "axis": 1})
case("split_at", "split_at", [rand((7, 3))], lambda x: mx.split(x, [2, 5], axis=0), params={"indices": [2, 5], "axis": 0})
case("split_equal", "split", [rand((3, 8))], lambda x: mx.split(x, 4, axis=1), params={"parts": 4, "axis": 1})
case("take_T", "take", [rand((4, 5)), mx.array([3, 1, 1], dtype=mx.int32)], lambda x, i: mx.take(x, i, axis=1),
     params={"axis": 1}, views=["T", None])
case("take_uint32_idx", "take", [rand((6, 3)), mx.array([5, 0], dtype=mx.uint32)], lambda x, i: mx.take(x, i, axis=0),
     params={"axis": 0})


# ---- sorting and selection -----------------------------------------------------------------------------------
for dt in FLOATS:
    case(f"sort_{dt}", "sort", [rand((4, 9), dt)], lambda x: mx.sort(x, axis=-1), params={"axis": -1})
    case(f"argsort_{dt}", "argsort", [rand((9, 4), dt)], lambda x: mx.argsort(x, axis=0), params={"axis": 0})
    # topk's order is unspecified: the test sorts both sides before comparing.
    case(f"topk_{dt}", "topk", [rand((3, 20), dt)], lambda x: mx.sort(mx.topk(x, 5, axis=-1), axis=-1),
         params={"k": 5, "axis": -1})
    case(f"partition_{dt}", "partition", [rand((3, 12), dt)], lambda x: mx.partition(x, 4, axis=-1),
         params={"kth": 4, "axis": -1})
case("argpartition", "argpartition", [rand((3, 12))], lambda x: mx.argpartition(x, 3, axis=-1), params={"kth": 3, "axis": -1})
case("sort_T", "sort", [rand((9, 4))], lambda x: mx.sort(x, axis=1), params={"axis": 1}, views=["T"])

# ---- fast kernels ---------------------------------------------------------------------------------------------
for dt in FLOATS:
    case(f"rms_norm_{dt}", "rms_norm", [rand((2, 5, 64), dt), rand((64,), dt, 0.5, 1.5)],
         lambda x, w: mx.fast.rms_norm(x, w, 1e-5), params={"eps": 1e-5})
    case(f"layer_norm_{dt}", "layer_norm", [rand((2, 5, 48), dt), rand((48,), dt), rand((48,), dt)],
         lambda x, w, b: mx.fast.layer_norm(x, w, b, 1e-5), params={"eps": 1e-5})
    for trad in [False, True]:
        case(f"rope_{int(trad)}_{dt}", "rope", [rand((1, 4, 6, 64), dt)],
             lambda x, trad=trad: mx.fast.rope(x, 64, traditional=trad, base=10000.0, scale=1.0, offset=3),
             params={"dims": 64, "traditional": trad, "base": 10000.0, "scale": 1.0, "offset": 3})
    case(f"rope_partial_{dt}", "rope", [rand((2, 2, 5, 32), dt)],
         lambda x: mx.fast.rope(x, 16, traditional=False, base=500000.0, scale=0.5, offset=11),
         params={"dims": 16, "traditional": False, "base": 500000.0, "scale": 0.5, "offset": 11})
    case(f"rope_freqs_{dt}", "rope_freqs", [rand((1, 2, 7, 32), dt), rand((16,), "float32", 0.01, 1.0)],
         lambda x, f: mx.fast.rope(x, 32, traditional=False, base=None, scale=1.0, offset=5, freqs=f),
         params={"dims": 32, "traditional": False, "scale": 1.0, "offset": 5})
    case(f"rope_dynamic_{dt}", "rope_dynamic", [rand((1, 2, 7, 32), dt), mx.array(9, dtype=mx.int32)],
         lambda x, o: mx.fast.rope(x, 32, traditional=False, base=10000.0, scale=1.0, offset=o),
         params={"dims": 32, "traditional": False, "base": 10000.0, "scale": 1.0})
    q, k, v = rand((1, 4, 6, 32), dt), rand((1, 2, 9, 32), dt), rand((1, 2, 9, 32), dt)
    case(f"sdpa_none_{dt}", "sdpa", [q, k, v], lambda q, k, v: mx.fast.scaled_dot_product_attention(q, k, v, scale=32 ** -0.5),
         params={"scale": 32 ** -0.5, "mask": "none"})
    case(f"sdpa_causal_{dt}", "sdpa", [q, k, v],
         lambda q, k, v: mx.fast.scaled_dot_product_attention(q, k, v, scale=32 ** -0.5, mask="causal"),
         params={"scale": 32 ** -0.5, "mask": "causal"})
    bmask = rand((1, 1, 6, 9), "bool")
    bmask[..., 0] = True  # every query sees at least one key
    case(f"sdpa_boolmask_{dt}", "sdpa", [q, k, v, bmask],
         lambda q, k, v, m: mx.fast.scaled_dot_product_attention(q, k, v, scale=0.2, mask=m),
         params={"scale": 0.2, "mask": "array"})
    amask = rand((6, 9), dt, -3.0, 0.0)
    case(f"sdpa_addmask_{dt}", "sdpa", [q, k, v, amask],
         lambda q, k, v, m: mx.fast.scaled_dot_product_attention(q, k, v, scale=0.2, mask=m),
         params={"scale": 0.2, "mask": "array"})
    # Decode shape: one query over a cache, keys transposed in memory.
    case(f"sdpa_decode_{dt}", "sdpa", [rand((2, 4, 1, 64), dt), rand((2, 2, 64, 13), dt), rand((2, 2, 13, 64), dt)],
         lambda q, k, v: mx.fast.scaled_dot_product_attention(q, k, v, scale=0.125),
         params={"scale": 0.125, "mask": "none"}, views=[None, "T", None])

# ---- quantization ------------------------------------------------------------------------------------------------
for bits in [2, 3, 4, 5, 6, 8]:
    for gs in [32, 64, 128]:
        w = rand((16, 256), "float32", -1, 1)
        case(f"quantize_b{bits}_g{gs}", "quantize", [w], lambda w, gs=gs, bits=bits: list(mx.quantize(w, gs, bits)),
             params={"group_size": gs, "bits": bits, "mode": "affine"}, atol=0, rtol=0)
        wq, s, b = mx.quantize(w, gs, bits)
        case(f"dequantize_b{bits}_g{gs}", "dequantize", [wq, s, b],
             lambda wq, s, b, gs=gs, bits=bits: mx.dequantize(wq, s, b, gs, bits),
             params={"group_size": gs, "bits": bits, "mode": "affine"})
        if gs == 64 or bits == 4:
            case(f"qmm_b{bits}_g{gs}", "quantized_matmul", [rand((3, 256), "float32", -1, 1), wq, s, b],
                 lambda x, wq, s, b, gs=gs, bits=bits: mx.quantized_matmul(x, wq, s, b, True, gs, bits),
                 params={"group_size": gs, "bits": bits, "mode": "affine", "transpose": True}, rtol=1e-4, atol=1e-4)

# ---- random: a fixed key gives the same numbers everywhere ----------------------------------------------------------
case("random_uniform", "random_uniform", [mx.random.key(7)],
     lambda k: mx.random.uniform(-1.0, 2.0, (4, 5), key=k), params={"low": -1.0, "high": 2.0, "shape": [4, 5]})
case("random_normal", "random_normal", [mx.random.key(8)],
     lambda k: mx.random.normal((3, 6), loc=0.5, scale=2.0, key=k), params={"shape": [3, 6], "loc": 0.5, "scale": 2.0})
case("random_categorical", "random_categorical", [rand((4, 10), "float32", -3, 3), mx.random.key(9)],
     lambda l, k: mx.random.categorical(l, axis=-1, key=k), params={"num_samples": None})
case("random_categorical_n", "random_categorical", [rand((2, 6), "float32", -3, 3), mx.random.key(10)],
     lambda l, k: mx.random.categorical(l, axis=-1, num_samples=5, key=k), params={"num_samples": 5})
case("random_split", "random_split", [mx.random.key(11)], lambda k: mx.random.split(k, 3), params={"num": 3})
case("random_randint", "random_randint", [mx.random.key(12)],
     lambda k: mx.random.randint(-5, 17, (4, 4), key=k), params={"low": -5, "high": 17, "shape": [4, 4]})

# ---- autodiff: a small two-layer regression loss and its gradients ---------------------------------------------------


def mlp_loss(x, w1, w2, y):
    h = mx.tanh(x @ w1)
    return mx.mean(mx.square(h @ w2 - y))


x, w1, w2, y = rand((8, 5)), rand((5, 7), lo=-0.5, hi=0.5), rand((7, 3), lo=-0.5, hi=0.5), rand((8, 3))
case("grad_mlp", "grad_mlp", [x, w1, w2, y],
     lambda x, w1, w2, y: [*mx.value_and_grad(mlp_loss, argnums=[1, 2])(x, w1, w2, y)[1],
                           mlp_loss(x, w1, w2, y)], params={"argnums": [1, 2]})


def softmax_ce(logits, labels):
    return mx.mean(mx.logsumexp(logits, axis=-1) - mx.take_along_axis(logits, labels[:, None], axis=-1)[:, 0])


lg, lb = rand((6, 10)), mx.array([1, 0, 9, 3, 3, 7], dtype=mx.int32)
ct = mx.array(1.0)
case("vjp_ce", "vjp_ce", [lg, lb, ct],
     lambda l, y, c: [mx.vjp(lambda l: [softmax_ce(l, y)], [l], [c])[1][0]], params={})

# ---- activations of the model layers, which must match to the bit --------------------------------------------------
# mlx.nn.gelu_approx (Gemma's GeGLU) is an mx.compile'd (shapeless) function: the engine builds
# the same ops uncompiled, which must round identically. Wide inputs reach tanh's saturation.
import mlx.nn as nn  # noqa: E402

for dt in FLOATS:
    case(f"gelu_approx_{dt}", "gelu_approx", [rand((7, 301), dt, -8.0, 8.0)], nn.gelu_approx, atol=0.0, rtol=0.0)

mx.eval(tensors)
for k, v in list(tensors.items()):
    if v.dtype == mx.complex64:
        raise SystemExit(f"unexpected complex output in {k}")

mx.save_safetensors(sys.argv[1], tensors, metadata={"cases": json.dumps(cases), "mlx": mx.__version__})
print(f"{len(cases)} op cases, {len(tensors)} tensors -> {sys.argv[1]}")
