"""Writes the .npy fixtures of tests/io/npy_test.cpp with NumPy (run from this folder:
python3 make_npy.py). The C++ test recomputes every value from the same formulas, so the
files test both the reader and, byte for byte, the writer."""
import numpy as np
from numpy.lib import format as npf

f2 = np.float16
np.save("f2_2x3.npy", np.array([[0.0, -0.0, 1.5], [65504.0, 2.0**-24, -np.inf]], dtype=f2))
np.save("f2_special.npy", np.array([np.nan, np.inf, 2.0**-14, -(2.0**-15)], dtype=f2))
np.save("f4_2x3x4.npy", (np.arange(24, dtype=np.float32) * np.float32(0.1) - np.float32(1.2)).reshape(2, 3, 4))
np.save("f4_scalar.npy", np.array(3.25, dtype=np.float32))
np.save("f4_1d.npy", np.arange(5, dtype=np.float32) * np.float32(0.5))
np.save("f4_empty.npy", np.zeros((0, 3), dtype=np.float32))
np.save("f4_rank8.npy", np.arange(2 * 1 * 2 * 1 * 1 * 2 * 1 * 3, dtype=np.float32).reshape(2, 1, 2, 1, 1, 2, 1, 3))
np.save("f8_3x2.npy", (np.arange(6, dtype=np.float64) * 0.1 - 0.25).reshape(3, 2))
np.save("i1_4.npy", np.array([-128, -1, 0, 127], dtype=np.int8))
np.save("u1_4.npy", np.array([0, 1, 128, 255], dtype=np.uint8))
np.save("i2_3.npy", np.array([-32768, 0, 32767], dtype=np.int16))
np.save("i4_3.npy", np.array([-2147483648, 0, 2147483647], dtype=np.int32))
for version in ((2, 0), (3, 0)):
    with open(f"f4_v{version[0]}.npy", "wb") as f:
        npf.write_array(f, np.arange(6, dtype=np.float32).reshape(3, 2), version=version)
np.save("f4_be.npy", (np.arange(4, dtype=np.float32) * np.float32(1.25)).astype(">f4"))
np.save("f4_fortran.npy", np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)))
np.save("i8_2.npy", np.array([-(2**40), 2**40 + 1], dtype=np.int64))
