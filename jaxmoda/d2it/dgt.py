"""The Dynamic Grain Transformer (DGT) and the two-transformer D²iT model.

The DGT generates the grain map (where an image needs detail) from the class label; the paper names
the model but not its mechanism (arXiv 2504.09454 Sec. 3.2). Formulations, a config choice
(`model.dgt.formulation`):
  * 'analog_bits' (default, built): a small DiT with patch size 1 does flow matching (or DDPM) on the
    map written as +-1 analog bits [B, h, w, 1] (fine = +1), and the sample is thresholded at 0. It
    needs no machinery beyond the shared flow core, and samples are diverse by construction.
  * 'masked' (MaskGIT-style masked discrete generation over the two grains): not built; choosing it
    raises NotImplementedError.
  * A noise-to-logits DiT trained with cross-entropy (one reading of the paper's Eq. 5) collapses to
    the per-class mode without an extra diversity term; it is deliberately not offered.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmoda.d2it.dct import DynamicContentTransformer
from jaxmoda.d2it.grains import COARSE, DTYPE, FINE
from jaxmoda.nn.dit import DiT

FORMULATIONS = ("analog_bits", "masked")


def to_bits(grain_bhw: jax.Array) -> jax.Array:
    """Grain map int [B, h, w] -> analog bits float32 [B, h, w, 1]: FINE = +1, COARSE = -1."""
    return jnp.where(grain_bhw == FINE, 1.0, -1.0).astype(jnp.float32)[..., None]


def from_bits(bits_bhw1: jax.Array) -> jax.Array:
    """Analog bits [B, h, w, 1] -> grain map int8 [B, h, w] (threshold at 0)."""
    return jnp.where(bits_bhw1[..., 0] > 0, FINE, COARSE).astype(DTYPE)


def check_formulation(name: str) -> None:
    if name not in FORMULATIONS:
        raise ValueError(f"DGT formulation {name!r} is unknown; choose one of {', '.join(FORMULATIONS)}")
    if name == "masked":
        raise NotImplementedError("the masked discrete (MaskGIT-style) DGT is not built; use "
                                  "model.dgt.formulation='analog_bits'")


def make_dgt(*, grid: int, hidden: int, depth: int, num_heads: int, num_classes: int, mlp_ratio: float = 4.0,
             attention: str = "xla", remat: str = "none", dtype=jnp.float32, param_dtype=jnp.float32,
             rngs: nnx.Rngs) -> DiT:
    """The analog-bit DGT: a DiT over the [grid, grid, 1] map with patch size 1."""
    return DiT(input_size=grid, in_channels=1, patch_size=1, hidden=hidden, depth=depth, num_heads=num_heads,
               num_classes=num_classes, mlp_ratio=mlp_ratio, attention=attention, remat=remat, dtype=dtype,
               param_dtype=param_dtype, rngs=rngs)


class D2iT(nnx.Module):
    """The two transformers trained together: `dct` (content) and `dgt` (grain map; None when the grain
    map is fixed, as in the all-fine / all-coarse baselines)."""

    def __init__(self, dct: DynamicContentTransformer, dgt: DiT | None):
        self.dct = dct
        self.dgt = dgt

    @property
    def null_label(self) -> int:
        return self.dct.null_label
