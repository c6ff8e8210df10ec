"""Seeds for every random choice, derived from the run's one seed.

Each use gets its own stream (`purpose`), so adding a random choice in one place
never shifts the numbers drawn in another, and a resumed run draws exactly what
an uninterrupted one would.
"""

from __future__ import annotations

import numpy as np

# One integer per purpose; never reorder or reuse.
SPLIT, TARGET_SUBSET, BASE_EXAMPLES, EPOCH_ORDER, MODEL_INIT, INNER_BATCH, LEARNER, VALIDATION, \
    TEST, BASELINE, TEACHER, CLASS_MAPPING, START_VALIDATION, VALIDATION_SEARCH, \
    LEARNER_POOL, HORIZON_INITS, TEST_RESPLIT = range(17)


def derive_seed(seed: int, purpose: int, *indices: int) -> int:
    """A 31-bit seed that depends only on (seed, purpose, indices)."""
    return int(np.random.default_rng([seed, purpose, *indices]).integers(0, 2**31 - 1))


def rng_for(seed: int, purpose: int, *indices: int) -> np.random.Generator:
    return np.random.default_rng([seed, purpose, *indices])
