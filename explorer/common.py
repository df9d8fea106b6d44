"""What every layer of the explorer needs and nothing else: the class ranking with its one tie order, the head
fusions' names, and the one-line reason of an error. A leaf: it imports numpy and the standard library only, so the
figure layer, the trace and the app's page can all use it without importing torch or each other."""
from __future__ import annotations

import numpy as np

HEAD_FUSIONS = ("mean", "max", "min")  # how attention rollout fuses the h heads of a layer (analysis.fuse_heads)


def ranking(probabilities, k: int) -> np.ndarray:
    """Indices of the k most probable classes, most probable first. Ties keep class order (a random-init head gives
    every class the same probability): /predict, the chart and the table list the same classes in the same order."""
    probabilities = np.asarray(probabilities, dtype=np.float32).reshape(-1)  # (K,)
    k = max(1, min(int(k), probabilities.size))
    return np.argsort(-probabilities, kind="stable")[:k]  # (k,)


def equally_likely(probabilities) -> bool:
    """All K classes have the same probability 1/K (up to float32 rounding): the head says nothing."""
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1)  # (K,)
    return probabilities.size > 1 and float(np.ptp(probabilities)) <= 1e-6 / probabilities.size


def reason(error: BaseException) -> str:
    """The first line of an error's reason, without a final full stop, never empty: the clause inside a one-sentence
    message ("… is not valid JSON (Expecting value: line 1 column 1)"). An HTTP error reads "HTTP 404 Not Found"."""
    code = getattr(error, "code", None)
    if isinstance(code, int) and hasattr(error, "reason") and hasattr(error, "headers"):  # urllib's HTTPError
        return f"HTTP {code} {error.reason}".strip()
    cause = getattr(error, "reason", None) or error  # urllib's URLError keeps the socket's error in .reason
    lines = str(cause).strip().splitlines()
    return (lines[0].rstrip(".") if lines else "") or type(error).__name__
