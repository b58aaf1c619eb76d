"""Parameter sets as the stages pass them: a dict of named arrays, moved between dtypes in one place."""
from __future__ import annotations

from typing import Mapping

import numpy as np


def cast(params: Mapping[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    """``params`` as arrays of ``dtype`` (the one place states change dtype between checks)."""
    return {k: np.asarray(v, dtype=dtype) for k, v in params.items()}
