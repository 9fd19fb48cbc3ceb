"""Independent seeds derived from a run seed and a purpose, never overflowing ``torch.manual_seed``."""

from __future__ import annotations

import numpy as np


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that depends on every part (seed, task index, purpose, epoch ...).

    ``numpy.random.SeedSequence`` mixes the parts, so neighbouring inputs give unrelated streams
    and large run seeds cannot overflow.

    Example:
        >>> derive_seed(0, 1) != derive_seed(1, 0)
        True
    """
    if any(p < 0 for p in parts):
        raise ValueError(f"seed parts must be non-negative, got {parts}")
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> np.uint64(1))
