"""ONNX Runtime check of qlib's QDQ writer (qlib/onnx.hpp) on the tiny residual model.

  qdq_ort_check.py FIXTURE_EXE OUTDIR

FIXTURE_EXE (tests/engine/qdq_fixture.cpp) writes fp32.onnx, qdq_float.onnx, qdq_int8.onnx and
amax.txt into OUTDIR. This script checks that
1. ONNX Runtime loads and runs both QDQ forms (float weights + Q/DQ, int8 weights + DQ);
2. the scales and int8 weights in the files are what numpy computes from the float weights
   (scale_c = max|W_c| / 127 in float32, q = clip(round_half_even(W / s), -127, 127)): exact;
3. ORT's output equals a numpy simulation of the same quantization (activations fake-quantized
   per tensor at amax / 127 on [-128, 127], weights per channel), up to float rounding;
4. both storage forms give the same output, and the QDQ output differs from FP32 (so the
   quantization is really there) by a plausible amount.
"""
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort

try:
    import onnx
    from onnx import numpy_helper
except ImportError:  # pragma: no cover
    print("SKIPPED: the onnx Python package is not importable (run scripts/setup_engine_data.sh)")
    sys.exit(77)

F = np.float32
EPS = F(1.1920928955078125e-07)


def fq_act(x, amax):
    s = F(amax) / F(127)
    if s < EPS:
        s = F(1)
    return (np.clip(np.rint(x / s), -128, 127) * s).astype(F)


def weight_scale(w, axis):
    other = tuple(i for i in range(w.ndim) if i != axis) if axis >= 0 else None
    amax = np.abs(w).max(axis=other).astype(F)
    s = (amax / F(127)).astype(F)
    return np.where(s < EPS, F(1), s).astype(F)


def fq_w(w, axis):
    s = weight_scale(w, axis)
    shape = [1] * w.ndim
    if axis >= 0:
        shape[axis] = -1
    s = s.reshape(shape)
    return (np.clip(np.rint(w / s), -127, 127) * s).astype(F)


def conv2d(x, w, b=None, pad=0):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))  # n c H W kh kw
    y = np.einsum("nchwij,ocij->nohw", win.astype(np.float64), w.astype(np.float64))
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y.astype(F)


def conv_transpose_s2k2(x, w, b):
    # stride 2, kernel 2: output blocks do not overlap.
    n, c, h, wd = x.shape
    _, o, kh, kw = w.shape
    y = np.einsum("nchw,coij->nohiwj", x.astype(np.float64), w.astype(np.float64)).reshape(n, o, h * kh, wd * kw)
    return (y + b.reshape(1, -1, 1, 1)).astype(F)


def simulate(W, amax, x):
    relu = lambda t: np.maximum(t, F(0))
    xq = fq_act(x, amax["x"])
    r1 = relu(conv2d(xq, fq_w(W["w1"], 0), W["b1"], pad=1))
    r1q = fq_act(r1, amax["r1"])
    c2 = conv2d(r1q, fq_w(W["w2"], 0), pad=1)
    k = (W["bn_scale"] / np.sqrt(W["bn_var"] + F(1e-5))).reshape(1, -1, 1, 1)
    bn = (c2 - W["bn_mean"].reshape(1, -1, 1, 1)) * k + W["bn_bias"].reshape(1, -1, 1, 1)
    r2 = relu(bn + r1q)
    r2q = fq_act(r2, amax["r2"])
    r3 = relu(conv_transpose_s2k2(r2q, fq_w(W["wt"], 1), W["bt"]))
    f = r3.mean(axis=(2, 3)).astype(F)
    fq = fq_act(f, amax["f"])
    g = (fq.astype(np.float64) @ fq_w(W["gb"], 0).T.astype(np.float64) + W["gc"]).astype(F)
    gq = fq_act(g, amax["g"])
    m = (gq.astype(np.float64) @ fq_w(W["mm"], 1).astype(np.float64)).astype(F)
    return m + W["bias"]


def main():
    exe, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    subprocess.run([exe, out], check=True)
    amax = {}
    for line in open(os.path.join(out, "amax.txt")):
        name, value = line.split()
        amax[name] = float(value)
    fp32 = onnx.load(os.path.join(out, "fp32.onnx"))
    W = {t.name: numpy_helper.to_array(t).astype(F) for t in fp32.graph.initializer}

    # 2. Scales and int8 weights, exactly.
    axes = {"w1": 0, "w2": 0, "wt": 1, "gb": 0, "mm": 1}
    for form in ("qdq_float.onnx", "qdq_int8.onnx"):
        m = onnx.load(os.path.join(out, form))
        onnx.checker.check_model(m)
        inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
        for name, axis in axes.items():
            s = inits[name + "_scale"]
            assert s.dtype == np.float32 and np.array_equal(s, weight_scale(W[name], axis)), (form, name)
            assert inits[name + "_zero_point"].dtype == np.int8 and not inits[name + "_zero_point"].any()
            if form == "qdq_int8.onnx":
                shape = [1] * W[name].ndim
                shape[axis] = -1
                q = np.clip(np.rint(W[name] / s.reshape(shape)), -127, 127).astype(np.int8)
                assert np.array_equal(inits[name + "_quantized"], q), (form, name)
        for name, a in amax.items():
            assert inits[name + "_scale"] == F(a) / F(127), (form, name)
    print("scales and int8 weights: exact")

    # 1, 3, 4. Run in ONNX Runtime.
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(F)
    run = lambda f: ort.InferenceSession(os.path.join(out, f), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    y32, yq, y8 = run("fp32.onnx"), run("qdq_float.onnx"), run("qdq_int8.onnx")
    ref = simulate(W, amax, x)
    scale = float(np.abs(ref).max())
    err_sim = float(np.abs(yq - ref).max()) / scale
    err_forms = float(np.abs(yq - y8).max()) / scale
    err_fp32 = float(np.abs(yq - y32).max()) / scale
    print(f"onnxruntime {ort.__version__}: |QDQ - numpy simulation| / max|y| = {err_sim:.2e}")
    print(f"|float-weight QDQ - int8-weight QDQ| / max|y| = {err_forms:.2e}")
    print(f"|QDQ - FP32| / max|y| = {err_fp32:.2e}")
    ok = True
    if err_sim > 1e-4:
        print("FAIL: ONNX Runtime's QDQ output differs from the numpy simulation")
        ok = False
    if err_forms > 1e-5:
        print("FAIL: the two weight storage forms disagree")
        ok = False
    if not (1e-4 < err_fp32 < 0.5):
        print("FAIL: the QDQ model's distance from FP32 is implausible")
        ok = False
    print("PASS" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
