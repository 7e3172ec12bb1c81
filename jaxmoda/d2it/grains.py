"""The grain-map convention of jaxmoda.d2it, defined here and nowhere else.

A grain map holds one value per S x S image region (S = 16 for D²iT at 256 px, so [B, 16, 16]):

    COARSE = 0   the region is coded once on the H/16 grid
    FINE   = 1   the region is coded as 2 x 2 vectors on the H/8 grid

stored as int8. The paper's figures draw coarse as "1" and fine as "2"; the predecessor code
(DynamicVectorQuantization) uses gate index 0 = coarse and 1 = fine, as here. Convert with
`to_paper_labels` only for display; never store the paper's labels.

The helpers accept NumPy or JAX arrays and return the same kind (they only use array methods).
"""

from __future__ import annotations

import numpy as np

COARSE = 0
FINE = 1
DTYPE = np.int8

# Only for figures and comparisons with the paper (Fig. 2).
PAPER_LABELS = {COARSE: 1, FINE: 2}


def from_fine_mask(fine_mask):
    """Bool mask (True = fine), any shape -> grain map of the same shape, int8."""
    # COARSE = 0 and FINE = 1, so the cast is the encoding; asserted here so a change is caught.
    assert (COARSE, FINE) == (0, 1)
    return fine_mask.astype(DTYPE)


def fine_count(grain):
    """Grain map [..., h, w] -> number of fine regions per map, int32 [...]."""
    return (grain == FINE).sum(axis=(-2, -1)).astype(np.int32)


def fine_fraction(grain):
    """Grain map [..., h, w] -> fraction of fine regions per map, float32 [...]."""
    return (grain == FINE).mean(axis=(-2, -1)).astype(np.float32)


def to_paper_labels(grain):
    """Grain map [..., h, w] -> the paper's labels (coarse 1, fine 2), int8, for display only."""
    return (grain + (PAPER_LABELS[COARSE] - COARSE)).astype(DTYPE)


def num_codes(grain):
    """Grain map [..., h, w] -> latent vectors per map: h*w + 3 * fine_count (D²iT §2), int32 [...]."""
    h, w = grain.shape[-2:]
    return h * w + 3 * fine_count(grain)
