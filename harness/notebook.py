"""What the notebook printed (In [191], after 100,000 steps from the NOTEBOOK preset), and how it printed it."""
from __future__ import annotations

import numpy as np

STEPS = 100_000
PRINTED = "Loss: 0.0033, Predictions: [0.04365407 0.91212019 0.91621932 0.09889067]"

# The loop prints the loss and y_pred of its last iteration, computed before that
# iteration's update: the state after STEPS - 1 updates.
PRINTED_STEP = STEPS - 1


def printed_line(loss: float, predictions: np.ndarray) -> str:
    """The notebook's display line for a loss and predictions: ``f"{loss:.4f}"`` and NumPy's 8 digits."""
    preds = np.asarray(predictions, dtype=np.float64).ravel()
    shown = np.array2string(preds, precision=8, floatmode="maxprec", max_line_width=10**6)  # one line
    return f"Loss: {loss:.4f}, Predictions: {shown}"
