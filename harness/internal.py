"""An unexpected error inside the harness itself: one line, the traceback saved to a file, its own exit code."""
from __future__ import annotations

import sys
import tempfile
import time
import traceback
from pathlib import Path

from harness.running.guard import one_line

INTERNAL_ERROR = 3  # not 1 (a check failed) nor 2 (bad usage): the harness, not the input or an implementation


def report(prog: str, exc: BaseException, out: Path | None = None) -> int:
    """Print ``prog: internal error: ...`` naming the saved traceback; return INTERNAL_ERROR."""
    path = Path(tempfile.gettempdir()) / f"xor-harness-internal-error-{time.strftime('%Y%m%d-%H%M%S')}.txt"
    try:
        path.write_text("".join(traceback.format_exception(exc)))
        saved = f"traceback saved to {path}"
    except OSError as err:
        saved = f"the traceback could not be saved ({err})"
    nothing = f"; nothing was written to {out}" if out is not None else ""
    print(f"{prog}: internal error: {type(exc).__name__}: {one_line(exc)}; {saved}{nothing}", file=sys.stderr)
    return INTERNAL_ERROR
