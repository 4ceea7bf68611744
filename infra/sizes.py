"""Bundle size as Lambda counts it (no CDK import, so the benchmark can use it too)."""

from __future__ import annotations

import os
from pathlib import Path


def tree_size(root: Path) -> tuple[int, int]:
    """(bytes, files) of a directory: the unzipped size Lambda counts against its 250 MB."""
    total = files = 0
    for dirpath, _, filenames in os.walk(root):
        for f in filenames:
            p = Path(dirpath, f)
            if not p.is_symlink():
                total += p.stat().st_size
                files += 1
    return total, files
