"""Calibration data for ONNX models: image folders and NumPy arrays, streamed in batches.

Sources (one is picked from the path):

- a ``.npy`` file: one array, either a batch of samples ``(N, *input_shape[1:])`` or a single
  sample; read in slices of at most ``_NPY_CHUNK_BYTES`` with plain file reads (not a
  memory map, whose touched pages would count in the process's resident memory), so memory
  does not grow with the file;
- a ``.npz`` file: one array, or one array per model input named like the input;
- a folder of ``.npy``/``.npz`` files: the same, concatenated in file-name order;
- a folder of images (PNG, JPEG, BMP, PPM, TIFF, WebP), read with Pillow in file-name order,
  converted to RGB (or grayscale for a 1-channel input), resized to ``size = (H, W)``
  (bilinear), scaled to [0, 1], normalized ``(x - mean) / std`` per channel and laid out
  ``NCHW`` or ``NHWC``.

Every batch is a ``{input name: float32 array}`` feed for ONNX Runtime.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx

from torchquant.errors import ConfigError, FileFormatError

__all__ = [
    "IMAGE_SUFFIXES",
    "CalibrationData",
    "ModelInput",
    "load_calibration_data",
    "model_inputs",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
_ARRAY_SUFFIXES = (".npy", ".npz")
Layout = Literal["NCHW", "NHWC"]
Feed = dict[str, np.ndarray]


@dataclass(frozen=True)
class ModelInput:
    """A graph input of an ONNX model: its name and shape (``None`` for a dynamic dim)."""

    name: str
    shape: tuple[int | None, ...]

    def matches(self, shape: Sequence[int]) -> bool:
        """True when ``shape`` has this input's rank and static dimensions."""
        return len(shape) == len(self.shape) and all(
            d is None or d == s for d, s in zip(self.shape, shape, strict=True)
        )


def model_inputs(model: onnx.ModelProto) -> list[ModelInput]:
    """The graph inputs that are not initializers, with their static dims."""
    constants = {t.name for t in model.graph.initializer}
    found = []
    for value in model.graph.input:
        if value.name in constants:
            continue
        dims = value.type.tensor_type.shape.dim
        shape = tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims
        )
        found.append(ModelInput(value.name, shape))
    return found


@dataclass(frozen=True)
class CalibrationData:
    """A re-iterable stream of feeds: ``num_samples`` samples in batches of ``batch_size``.

    With ``drop_last`` (a model with a static batch dimension) an incomplete last batch is
    left out.
    """

    path: Path
    kind: Literal["images", "arrays"]
    files: tuple[Path, ...]
    inputs: tuple[ModelInput, ...]
    batch_size: int
    num_samples: int
    drop_last: bool = False
    size: tuple[int, int] | None = None
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: Layout = "NCHW"

    @property
    def num_batches(self) -> int:
        """Batches one pass yields."""
        full, rest = divmod(self.num_samples, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[Feed]:
        chunks = self._image_chunks() if self.kind == "images" else self._array_chunks()
        return _rebatch(chunks, self.batch_size, self.num_samples, self.drop_last)

    def _array_chunks(self) -> Iterator[Feed]:
        for file in self.files:
            if file.suffix == ".npy" and len(self.inputs) == 1:
                yield from _npy_chunks(file, self.inputs[0])
            else:
                yield _read_arrays(file, self.inputs)

    def _image_chunks(self) -> Iterator[Feed]:
        (inp,) = self.inputs
        assert self.size is not None
        channels = _channels(inp, self.layout)
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        for file in self.files:
            img = _read_image(file, channels, self.size)  # (H, W, C) in [0, 1]
            img = (img - mean) / std
            if self.layout == "NCHW":
                img = img.transpose(2, 0, 1)
            yield {inp.name: np.ascontiguousarray(img[None], dtype=np.float32)}


def _rebatch(
    chunks: Iterator[Feed], batch_size: int, limit: int, drop_last: bool
) -> Iterator[Feed]:
    """Cut a stream of sample chunks into batches; stops after ``limit`` samples."""
    pending: list[Feed] = []
    count = emitted = 0
    for chunk in chunks:
        n = next(iter(chunk.values())).shape[0]
        start = 0
        while start < n and emitted + count < limit:
            take = min(n - start, batch_size - count, limit - emitted - count)
            pending.append({k: v[start : start + take] for k, v in chunk.items()})
            count += take
            start += take
            if count == batch_size:
                yield _concat(pending)
                emitted += count
                pending, count = [], 0
        if emitted + count >= limit:
            break
    if count and not drop_last:
        yield _concat(pending)


def _concat(parts: list[Feed]) -> Feed:
    return {
        k: np.ascontiguousarray(np.concatenate([p[k] for p in parts]), dtype=np.float32)
        for k in parts[0]
    }


def _channels(inp: ModelInput, layout: Layout) -> int:
    if len(inp.shape) != 4:
        raise ConfigError(f"input {inp.name!r} has shape {inp.shape}; image data needs a 4-D input")
    c = inp.shape[1] if layout == "NCHW" else inp.shape[3]
    if c not in (1, 3):
        raise ConfigError(
            f"input {inp.name!r} has {c} channels in layout {layout}; images give 1 or 3"
        )
    return c


def _read_image(file: Path, channels: int, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as raw:
            img = raw.convert("L" if channels == 1 else "RGB")
            img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise FileFormatError(f"{file}: cannot read image ({e})") from None
    return arr.reshape(size[0], size[1], channels)


def _as_batch(arr: np.ndarray, inp: ModelInput, file: Path) -> np.ndarray:
    """A sample becomes a batch of one; a batch stays as is."""
    if arr.ndim == len(inp.shape) - 1:
        return arr[None]
    if arr.ndim != len(inp.shape):
        raise ConfigError(
            f"{file}: array of shape {arr.shape} does not fit input {inp.name!r} of shape {inp.shape}"
        )
    return arr


def _read_arrays(file: Path, inputs: Sequence[ModelInput]) -> Feed:
    try:
        if file.suffix == ".npy":
            loaded: dict[str, np.ndarray] = {"": np.load(file, mmap_mode="r", allow_pickle=False)}
        else:
            with np.load(file, allow_pickle=False) as npz:
                loaded = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as e:
        raise FileFormatError(f"{file}: cannot read array file ({e})") from None
    if len(loaded) == 1 and len(inputs) == 1:
        arr = next(iter(loaded.values()))
        return {inputs[0].name: _as_batch(arr, inputs[0], file)}
    names = [i.name for i in inputs]
    if sorted(loaded) != sorted(names):
        raise ConfigError(f"{file}: arrays {sorted(loaded)} do not match the model inputs {names}")
    feed = {i.name: _as_batch(loaded[i.name], i, file) for i in inputs}
    if len({v.shape[0] for v in feed.values()}) != 1:
        raise ConfigError(
            f"{file}: arrays hold different sample counts: { {k: v.shape for k, v in feed.items()} }"
        )
    return feed


# Slice size of streamed .npy reads (bytes).
_NPY_CHUNK_BYTES = 16 * 2**20


def _npy_chunks(file: Path, inp: ModelInput) -> Iterator[Feed]:
    """A C-ordered batch in a ``.npy`` file, in slices of whole samples read with
    ``np.fromfile``; other layouts (a single sample, Fortran order) are read whole."""
    try:
        header = np.load(file, mmap_mode="r", allow_pickle=False)  # reads the header only
    except (OSError, ValueError, EOFError) as e:
        raise FileFormatError(f"{file}: cannot read array file ({e})") from None
    if header.ndim != len(inp.shape) or not header.flags.c_contiguous:
        yield _read_arrays(file, (inp,))
        return
    shape, dtype, offset = header.shape, header.dtype, int(header.offset)
    del header
    sample = int(np.prod(shape[1:], dtype=np.int64))
    rows = max(1, _NPY_CHUNK_BYTES // max(sample * dtype.itemsize, 1))
    with open(file, "rb") as f:
        f.seek(offset)
        for start in range(0, shape[0], rows):
            take = min(rows, shape[0] - start)
            chunk = np.fromfile(f, dtype=dtype, count=take * sample).reshape(take, *shape[1:])
            yield {inp.name: _as_batch(chunk, inp, file)}


def _count(file: Path, inputs: Sequence[ModelInput]) -> int:
    return int(next(iter(_read_arrays(file, inputs).values())).shape[0])


def load_calibration_data(
    path: str | os.PathLike[str],
    inputs: Sequence[ModelInput],
    batch_size: int,
    *,
    limit: int | None = None,
    size: tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    layout: Layout = "NCHW",
    drop_last: bool = False,
) -> CalibrationData:
    """Open ``path`` (see the module docstring) as batches for a model with ``inputs``.

    ``size`` defaults to the model input's static (H, W); ``mean``/``std`` hold one value
    or one per channel (defaults 0 and 1: images stay in [0, 1]); ``limit`` caps the
    number of samples.

    Raises:
        FileFormatError: a missing path, a folder without arrays or images.
        ConfigError: options that do not fit the model (channel count, dynamic size).
    """
    root = Path(path)
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be >= 1, got {limit}")
    if not root.exists():
        raise FileFormatError(f"{root}: no such calibration data file or folder")
    if root.is_dir():
        entries = sorted(p for p in root.iterdir() if p.is_file())
        arrays = tuple(p for p in entries if p.suffix.lower() in _ARRAY_SUFFIXES)
        images = tuple(p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES)
        if not arrays and not images:
            raise FileFormatError(
                f"{root}: folder holds no .npy/.npz arrays and no images ({', '.join(IMAGE_SUFFIXES)})"
            )
    elif root.suffix.lower() in _ARRAY_SUFFIXES:
        arrays, images = (root,), ()
    elif root.suffix.lower() in IMAGE_SUFFIXES:
        arrays, images = (), (root,)
    else:
        raise FileFormatError(f"{root}: expected a .npy/.npz file, an image or a folder of them")
    cap = limit if limit is not None else 2**62
    if arrays:
        total = min(cap, sum(_count(f, inputs) for f in arrays))
        return CalibrationData(root, "arrays", arrays, tuple(inputs), batch_size, total, drop_last)
    if len(inputs) != 1:
        raise ConfigError(f"image data feeds one input; the model has {[i.name for i in inputs]}")
    (inp,) = inputs
    channels = _channels(inp, layout)
    if size is None:
        hw = inp.shape[2:4] if layout == "NCHW" else inp.shape[1:3]
        if hw[0] is None or hw[1] is None:
            raise ConfigError(
                f"input {inp.name!r} has a dynamic image size {inp.shape}: give the size (H, W)"
            )
        size = (hw[0], hw[1])
    norm = []
    for label, values, default in (("mean", mean, 0.0), ("std", std, 1.0)):
        vals = tuple(float(v) for v in values) if values else (default,)
        if len(vals) not in (1, channels):
            raise ConfigError(f"{label} needs 1 or {channels} values, got {list(vals)}")
        if label == "std" and any(v <= 0 for v in vals):
            raise ConfigError(f"std values must be > 0, got {list(vals)}")
        norm.append(vals)
    total = min(cap, len(images))
    return CalibrationData(
        root, "images", images, (inp,), batch_size, total, drop_last, size, norm[0], norm[1], layout
    )
