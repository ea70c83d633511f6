"""Code and environment version recorded with every result (never part of the config hash)."""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False)


@lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """``{"commit", "dirty", "python", "numpy", "torch", "sklearn", "scipy"}``.

    ``commit`` is ``git rev-parse HEAD`` of the checkout holding this package (``None`` outside git);
    ``dirty`` is True when tracked files under ``neurolm_train/`` or ``neurolm_data/`` differ from it.
    """
    import numpy
    import scipy
    import sklearn
    import torch

    head = _git("rev-parse", "HEAD")
    commit = head.stdout.strip() if head.returncode == 0 else None
    dirty = None
    if commit is not None:
        dirty = _git("diff", "--quiet", "HEAD", "--", "neurolm_train", "neurolm_data").returncode != 0
    return {
        "commit": commit,
        "dirty": dirty,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
        "torch": torch.__version__,
    }
