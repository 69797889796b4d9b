"""The UCI / scikit-learn handwritten digits as plain files for qlib's C++ QAT demo.

PROVENANCE ONLY (not run in CI): needs scikit-learn. Run from the repository root:

    python examples/data/digits/make_digits.py

- ``digits.csv``: scikit-learn's ``sklearn/datasets/data/digits.csv.gz``, decompressed,
  byte for byte (1,797 lines, 65 comma-separated integers: 64 pixels 0..16 row-major, then
  the label 0..9; no header).
- ``split.csv``: 1,797 lines, one per line of digits.csv: ``0`` = train, ``1`` = test. The
  split is the one torchquant's digits example used (examples/digits_cnn.py ``load_data``):
  ``train_test_split(range(1797), test_size=540, random_state=0, stratify=labels)``, 1,257
  train and 540 test images, each class split in proportion.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import sklearn
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent


def main() -> None:
    source = Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"
    raw = gzip.decompress(source.read_bytes())
    (HERE / "digits.csv").write_bytes(raw)

    table = np.loadtxt(HERE / "digits.csv", delimiter=",", dtype=np.int64)  # (1797, 65)
    digits = load_digits()
    assert table.shape == (1797, 65)
    assert np.array_equal(table[:, :64], digits.data.astype(np.int64))
    assert np.array_equal(table[:, 64], digits.target)

    _, idx_test = train_test_split(
        list(range(1797)), test_size=540, random_state=0, stratify=digits.target
    )
    is_test = np.zeros(1797, dtype=np.int64)
    is_test[idx_test] = 1
    (HERE / "split.csv").write_text("".join(f"{v}\n" for v in is_test))

    print("sklearn", sklearn.__version__, "source", source)
    print("digits.csv.gz sha256", hashlib.sha256(source.read_bytes()).hexdigest())
    print("digits.csv sha256", hashlib.sha256(raw).hexdigest())
    print("split.csv sha256", hashlib.sha256((HERE / "split.csv").read_bytes()).hexdigest())
    print("train", int((is_test == 0).sum()), "test", int(is_test.sum()))
    for c in range(10):
        sel = table[:, 64] == c
        print(c, "train", int((sel & (is_test == 0)).sum()), "test", int((sel & (is_test == 1)).sum()))


if __name__ == "__main__":
    main()
