"""JSON files of the analysis results (`Analysis`, `QuantPlan`): one writer, one reader."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypeVar

from torchquant.errors import FileFormatError

__all__ = ["load_json", "save_json"]

_T = TypeVar("_T")


def save_json(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON (``Infinity`` for infinite floats, as Python's json)."""
    Path(path).write_text(json.dumps(data, indent=1), encoding="utf-8")


def load_json(path: str | os.PathLike[str], kind: str, build: Any) -> Any:
    """``build(dict)`` of the JSON file at ``path``; a missing or malformed file is a
    `FileFormatError` naming it and the ``kind`` of file expected."""
    p = Path(path)
    try:
        return build(json.loads(p.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise FileFormatError(f"{p}: not a torchquant {kind} file ({e})") from None
