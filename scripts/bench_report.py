#!/usr/bin/env python3
"""Runs qlib's benchmarks (one process, one thread) and prints each target as a ratio
against its baseline measured in the same run, with the date and the machine.

    python3 scripts/bench_report.py build-bench/bench/qlib_benchmarks [--min-time 0.2]

Targets (issues 9 and 10): MinMax >= 90% of the read baseline; abs histogram (2048 bins)
>= 50% of it; KL search >= 50x the naive published loop; IFMR exact >= 10x and HFMG >= 100x
AMCT-structured baselines; fake-quant forward/backward >= 80% of memcpy.
"""
import argparse
import datetime
import json
import platform
import subprocess
import sys


def run(exe, min_time, repetitions):
    """Median of `repetitions` runs of each benchmark (a shared machine is noisy)."""
    out = subprocess.run([exe, f"--benchmark_min_time={min_time}", "--benchmark_format=json",
                          f"--benchmark_repetitions={repetitions}",
                          "--benchmark_report_aggregates_only=true"],
                         check=True, capture_output=True, text=True).stdout
    res = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("aggregate_name", "median") == "median" and b["name"].endswith("_median"):
            res[b["name"][: -len("_median")]] = b
        elif "aggregate_name" not in b:
            res[b["name"]] = b
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("exe")
    ap.add_argument("--min-time", default="0.2")
    ap.add_argument("--repetitions", type=int, default=5)
    a = ap.parse_args()
    b = run(a.exe, a.min_time, a.repetitions)
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    print(f"qlib benchmarks, {datetime.date.today()}, {cpu}, {platform.machine()}, one thread, CPU time, "
          f"median of {a.repetitions} runs")
    rows = []

    def bw(name):
        return b[name]["bytes_per_second"] if name in b else None

    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}

    def t(name):  # seconds of CPU time per iteration
        return b[name]["cpu_time"] * scale[b[name]["time_unit"]] if name in b else None

    def ratio_bw(label, name, base, target):
        if bw(name) and bw(base):
            rows.append((label, bw(name) / bw(base), f"of {base}", target, bw(name) / bw(base) >= target))

    def speedup(label, fast, slow, target):
        if t(fast) and t(slow):
            rows.append((label, t(slow) / t(fast), f"x {slow}", target, t(slow) / t(fast) >= target))

    ratio_bw("MinMax update", "BM_minmax_update", "BM_baseline_read_sum", 0.90)
    ratio_bw("abs histogram add, 2048 bins", "BM_abs_histogram_add_2048", "BM_baseline_read_sum", 0.50)
    ratio_bw("range histogram add, 2048 bins", "BM_range_histogram_add_2048", "BM_baseline_read_sum", 0.0)
    speedup("KL search (TensorRT), 2048 bins", "BM_entropy_search/tensorrt", "BM_entropy_naive_published_loop", 50)
    speedup("KL search (modelopt)", "BM_entropy_search/modelopt", "BM_entropy_naive_published_loop", 0)
    speedup("IFMR exact, 1M values", "BM_ifmr_exact_qlib", "BM_ifmr_exact_amct_structure", 10)
    speedup("HFMG search, 4096 bins", "BM_hfmg_search_qlib", "BM_hfmg_search_amct_structure", 100)
    speedup("HFMG search vs pow-free baseline", "BM_hfmg_search_qlib", "BM_hfmg_search_amct_structure_no_pow", 0)
    for name, label in [("BM_fq_forward_per_tensor", "fake-quant forward, per tensor"),
                        ("BM_fq_forward_per_channel", "fake-quant forward, per channel"),
                        ("BM_fq_forward_per_tensor_inplace", "fake-quant forward, in place"),
                        ("BM_fq_backward_mask", "STE backward from mask"),
                        ("BM_fq_backward_recompute_per_tensor", "STE backward, recomputed mask"),
                        ("BM_fq_backward_recompute_per_channel", "STE backward, per channel"),
                        ("BM_fq_forward_cachemask_per_tensor", "forward writing the mask"),
                        ("BM_fq_lsq_backward_per_tensor", "LSQ backward, per tensor"),
                        ("BM_fq_lsq_backward_per_channel", "LSQ backward, per channel"),
                        ("BM_fq_ulq_backward", "ULQ backward")]:
        target = 0.80 if name in ("BM_fq_forward_per_tensor", "BM_fq_forward_per_channel",
                                  "BM_fq_backward_mask", "BM_fq_backward_recompute_per_tensor",
                                  "BM_fq_backward_recompute_per_channel") else 0.0
        ratio_bw(label, name, "BM_fq_baseline_memcpy", target)
    print(f"{'measure':<36} {'ratio':>9}  {'baseline':<40} {'target':>7}  met")
    for label, r, base, target, ok in rows:
        shown = f"{r:.0f}x" if "x " in base else f"{100 * r:.0f}%"
        tgt = "-" if target == 0 else (f"{100 * target:.0f}%" if target < 5 else f"{target:.0f}x")
        met = "-" if target == 0 else ("yes" if ok else "NO")
        print(f"{label:<36} {shown:>9}  {base:<40} {tgt:>7}  {met}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
