"""The machine's yardstick: the notebook's 2-4-1 training step as a scalar C loop, compiled here at run time.

``python -m harness.bench`` holds every fastest path to this loop. It does the
work the interface asks of an implementation, no less: each step runs the
forward pass over the four XOR samples (tanh hidden layer, sigmoid output),
records the reported loss (the mean of 0.5 (y - y_hat)^2) into a per-step
array, back-propagates the gradient of the summed loss and applies one SGD
update, in float64, with no vectorisation beyond what ``gcc -O2`` does on its
own (no ``-ffast-math``: the order of every sum is the one written here).

The loop is compiled with the C compiler found on PATH (``cc``, ``gcc`` or
``clang``) into a temporary folder; where there is none, or it fails,
``CLoop`` raises ``Unavailable`` with the reason. The program times its own
loop (``clock_gettime``), so process start-up is not counted, and prints the
final parameters and losses so the bench can check it computed the same
training as the NumPy reference before its time is used as a yardstick.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from impls.interface import Unavailable

COMPILERS = ("cc", "gcc", "clang")
FLAGS = ("-O2", "-std=c99")  # -O2 as in the measurement; no -ffast-math, which may reorder sums
LAYOUT = (("w0", (2, 4)), ("b0", (1, 4)), ("w1", (4, 1)), ("b1", (1, 1)))  # the order parameters travel in

SOURCE = r"""
#define _POSIX_C_SOURCE 199309L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* stdin: steps lr, the 4 inputs (x0 x1) and targets, then w0 (2x4, row-major), b0 (4), w1 (4), b1.
   stdout: the loop's seconds, the final parameters in that order, then the loss before the first and the
   last update. */
int main(void) {
    long steps; double lr, x[4][2], t[4], w0[2][4], b0[4], w1[4], b1;
    if (scanf("%ld %lf", &steps, &lr) != 2) return 2;
    for (int n = 0; n < 4; n++) if (scanf("%lf %lf %lf", &x[n][0], &x[n][1], &t[n]) != 3) return 2;
    for (int i = 0; i < 2; i++) for (int j = 0; j < 4; j++) if (scanf("%lf", &w0[i][j]) != 1) return 2;
    for (int j = 0; j < 4; j++) if (scanf("%lf", &b0[j]) != 1) return 2;
    for (int j = 0; j < 4; j++) if (scanf("%lf", &w1[j]) != 1) return 2;
    if (scanf("%lf", &b1) != 1) return 2;
    double *losses = malloc(sizeof(double) * (size_t)steps);
    if (!losses) return 3;
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (long s = 0; s < steps; s++) {
        double gw0[2][4] = {{0}}, gb0[4] = {0}, gw1[4] = {0}, gb1 = 0, loss = 0;
        for (int n = 0; n < 4; n++) {
            double h[4], z = b1;
            for (int j = 0; j < 4; j++) {
                h[j] = tanh(x[n][0] * w0[0][j] + x[n][1] * w0[1][j] + b0[j]);
                z += h[j] * w1[j];
            }
            double out = 1.0 / (1.0 + exp(-z)), err = out - t[n];
            loss += 0.5 * err * err;
            double dz = err * out * (1.0 - out);
            gb1 += dz;
            for (int j = 0; j < 4; j++) {
                gw1[j] += h[j] * dz;
                double dh = dz * w1[j] * (1.0 - h[j] * h[j]);
                gb0[j] += dh;
                gw0[0][j] += x[n][0] * dh;
                gw0[1][j] += x[n][1] * dh;
            }
        }
        losses[s] = loss / 4;
        for (int j = 0; j < 4; j++) {
            w0[0][j] -= lr * gw0[0][j]; w0[1][j] -= lr * gw0[1][j]; b0[j] -= lr * gb0[j]; w1[j] -= lr * gw1[j];
        }
        b1 -= lr * gb1;
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    printf("%.17g\n", (double)(end.tv_sec - start.tv_sec) + 1e-9 * (double)(end.tv_nsec - start.tv_nsec));
    for (int i = 0; i < 2; i++) for (int j = 0; j < 4; j++) printf("%.17g\n", w0[i][j]);
    for (int j = 0; j < 4; j++) printf("%.17g\n", b0[j]);
    for (int j = 0; j < 4; j++) printf("%.17g\n", w1[j]);
    printf("%.17g\n%.17g\n%.17g\n", b1, losses[0], losses[steps - 1]);
    free(losses);
    return 0;
}
"""


@dataclass
class CRun:
    """One run of the C loop: its own timing of the loop, what it trained to, and its first and last loss."""

    seconds: float
    params: dict[str, np.ndarray]
    first_loss: float
    last_loss: float


class CLoop:
    """The compiled loop, in a temporary folder that lives as long as this object (``close`` removes it)."""

    def __init__(self) -> None:
        compiler = next((c for c in COMPILERS if shutil.which(c)), None)
        if compiler is None:
            raise Unavailable(f"the C yardstick needs a C compiler; none of {', '.join(COMPILERS)} is on PATH")
        self._folder = tempfile.TemporaryDirectory(prefix="xor-harness-c-")
        source, self.binary = Path(self._folder.name) / "step.c", Path(self._folder.name) / "step"
        source.write_text(SOURCE)
        self.compiler = f"{compiler} {' '.join(FLAGS)}"
        built = subprocess.run([compiler, *FLAGS, "-o", str(self.binary), str(source), "-lm"],
                               capture_output=True, text=True)
        if built.returncode != 0:
            self.close()
            first = (built.stderr.strip().splitlines() or ["no message"])[0]
            raise Unavailable(f"the C yardstick did not compile with {self.compiler}: {first}")

    def run(self, params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, steps: int, lr: float) -> CRun:
        """Train ``steps`` steps of 2-4-1 from ``params`` on the four samples ``x``, ``y``."""
        rows = [f"{steps} {lr!r}"] + [f"{a!r} {b!r} {t!r}" for (a, b), t in zip(x.tolist(), y.ravel().tolist())]
        values = np.concatenate([np.asarray(params[k], np.float64).ravel() for k, _ in LAYOUT])
        done = subprocess.run([str(self.binary)], input="\n".join(rows + [repr(float(v)) for v in values]),
                              capture_output=True, text=True, check=True)
        numbers = [float(v) for v in done.stdout.split()]
        found, at = {}, 1
        for name, shape in LAYOUT:
            count = int(np.prod(shape))
            found[name] = np.array(numbers[at:at + count]).reshape(shape)
            at += count
        return CRun(numbers[0], found, numbers[at], numbers[at + 1])

    def close(self) -> None:
        self._folder.cleanup()
