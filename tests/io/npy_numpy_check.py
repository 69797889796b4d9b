"""numpy reads the .npy files qlib writes, and writes the same bytes for the same arrays.

Usage: python3 npy_numpy_check.py <npy_numpy_writer executable> <work folder>
(registered as the ctest io.npy_numpy_check when numpy is importable at configure time).
"""
import os
import subprocess
import sys

import numpy as np
from numpy.lib import format as npf


def main() -> int:
    exe, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    subprocess.run([exe, work], check=True)
    shapes = {"scalar": (), "empty": (0,), "vec": (5,), "cube": (2, 3, 4), "rank8": (1, 2, 1, 3, 1, 2, 1, 2),
              "long": (70001,)}
    checked = 0
    for t in ["f2", "f4", "f8", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8"]:
        for sname, shape in shapes.items():
            n = int(np.prod(shape, dtype=np.int64))
            k = (37 * np.arange(n, dtype=np.int64)) % 101
            v = k if t[0] == "u" else k - 50
            dtype = np.dtype("<" + t if t[1] != "1" else "|" + t)
            expect = (v / 8.0 if t[0] == "f" else v).astype(dtype).reshape(shape)
            for version in (1, 2, 3):
                if version > 1 and sname != "cube":
                    continue
                path = os.path.join(work, f"{t}_{sname}_v{version}.npy")
                got = np.load(path)
                assert got.dtype == expect.dtype and got.shape == expect.shape, path
                assert np.array_equal(got, expect), path
                with open(path, "rb") as f:
                    ours = f.read()
                ref = os.path.join(work, "numpy.npy")
                with open(ref, "wb") as f:
                    npf.write_array(f, expect, version=(version, 0))
                with open(ref, "rb") as f:
                    theirs = f.read()
                assert ours == theirs, f"{path}: bytes differ from numpy's"
                checked += 1
    print(f"numpy read {checked} qlib .npy files; all byte-identical to numpy's own")
    return 0


if __name__ == "__main__":
    sys.exit(main())
