"""Hinge GAN losses, the taming adaptive generator weight, and the one-backward GAN recipe.

Recipe (taming `VQLPIPSWithDiscriminator`, as in DQ-VAE; shared by the D²iT DVAE and the MoDA renderer):

    L_ae   = L_rec + w_adapt * disc_factor * hinge_g_loss(D(recon))        # autoencoder update
    L_disc = disc_factor * hinge_d_loss(D(x), D(recon))                      # discriminator update
    w_adapt = adaptive_weight(||dL_rec/dW_last||, ||dL_G/dW_last||) * disc_weight

One backward pass, one optimizer. Taming runs two optimizers and two backward passes (the Lightning
`optimizer_idx` alternation). A functional step can do both updates with ONE `jax.grad` over the
joined params {"ae": ..., "disc": ...} by cutting the cross terms with `stop_gradient`:

    def loss(params):
        ae, disc = params["ae"], params["disc"]
        recon = decode(ae, x)
        d_frozen = jax.lax.stop_gradient(disc)                 # the generator loss must not move D
        l_ae = rec_loss(recon, x) + w * factor * hinge_g_loss(D(d_frozen, recon))
        fake = jax.lax.stop_gradient(recon)                    # the D loss must not move the AE
        l_disc = factor * hinge_d_loss(D(disc, x), D(disc, fake))
        return l_ae + l_disc

d(l_ae + l_disc)/d ae == d l_ae/d ae and d(l_ae + l_disc)/d disc == d l_disc/d disc exactly, so each
group gets only its own gradient (tested in tests/test_gan_losses.py). The generator term still
backpropagates *through* D to the reconstruction; only D's parameters are frozen there. Both groups
share one optimizer (taming uses Adam β=(0.5, 0.9) for both; separate learning rates, if wanted, go
through `optax.multi_transform` on the "ae"/"disc" labels). Note that a global-norm `grad_clip` on
the one optimizer clips both groups by their joint norm. One difference from taming: there the D
step runs after the AE update and recomputes the reconstruction with the updated AE; here both updates
use the same, pre-update reconstruction.

Adaptive weight without a second full backward. dL/dW_last depends only on the computation after
W_last. Compute the decoder up to the input `h` of its last layer, then differentiate a closure of
W_last alone: `last_layer_grad_norm(lambda w: L_rec(last(h, w)), w_last)`. That backward covers the
last layer (and, for L_G, back through D to its input), not the whole model, and is exact, not an
approximation. The result is a stopped-gradient number; the outer `jax.grad` treats it as a constant,
as taming's `.detach()` does.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def hinge_d_loss(logits_real: jax.Array, logits_fake: jax.Array) -> jax.Array:
    """Discriminator hinge loss: 0.5 * (mean(relu(1 - real)) + mean(relu(1 + fake))).

    The 0.5 factor is taming's (`hinge_d_loss`), which averages the real and fake terms; it halves the
    loss and its gradient relative to the textbook sum (Adam is nearly invariant to that scale; plain
    SGD and global-norm clipping are not).

    Args:
        logits_real: D logits on real images, any shape (e.g. patch maps [B, H', W', 1]).
        logits_fake: D logits on generated images, any shape.

    Returns:
        scalar float32 [].
    """
    real = jnp.mean(jax.nn.relu(1.0 - logits_real.astype(jnp.float32)))
    fake = jnp.mean(jax.nn.relu(1.0 + logits_fake.astype(jnp.float32)))
    return 0.5 * (real + fake)


def hinge_g_loss(logits_fake: jax.Array) -> jax.Array:
    """Generator hinge loss: -mean(logits_fake); `logits_fake` any shape, returns scalar []."""
    return -jnp.mean(logits_fake.astype(jnp.float32))


def adaptive_weight(rec_grad_norm: jax.Array, g_grad_norm: jax.Array, max_weight: float = 0.75,
                    eps: float = 1e-4) -> jax.Array:
    """clip(||∇L_rec|| / (||∇L_G|| + eps), 0, max_weight), gradient-stopped.

    Taming computes the same ratio on the last decoder layer and clamps it to [0, 1e4]; DQ-VAE (the D²iT
    DVAE basis) caps it at 0.75, the default here. Multiply by the config's `disc_weight` outside.

    Args:
        rec_grad_norm: scalar [] ||dL_rec/dW_last||.
        g_grad_norm: scalar [] ||dL_G/dW_last||.
        max_weight: upper clamp.
        eps: added to the denominator.

    Returns:
        scalar float32 [] with no gradient.
    """
    rec = jax.lax.stop_gradient(jnp.asarray(rec_grad_norm, jnp.float32))
    g = jax.lax.stop_gradient(jnp.asarray(g_grad_norm, jnp.float32))
    return jnp.clip(rec / (g + eps), 0.0, max_weight)


def last_layer_grad_norm(loss_fn_of_w: Callable[[jax.Array], jax.Array], w: jax.Array) -> jax.Array:
    """||d loss / d w||_2 (Frobenius) for a scalar loss written as a function of one weight `w`.

    Pass a closure over everything upstream of `w` (the last decoder layer's input, computed once in
    the main forward), so the backward here covers only what follows `w`. Usable inside a jitted,
    differentiated loss: `w` and the result are gradient-stopped.

    Args:
        loss_fn_of_w: w -> scalar loss.
        w: the last layer's weight (e.g. a conv kernel [kh, kw, Cin, Cout]); any shape.

    Returns:
        scalar float32 [].
    """
    grad = jax.grad(lambda v: jnp.asarray(loss_fn_of_w(v), jnp.float32))(jax.lax.stop_gradient(w))
    return jax.lax.stop_gradient(jnp.sqrt(jnp.sum(jnp.square(grad.astype(jnp.float32)))))


def disc_factor(step: jax.Array | int, start_step: int | jax.Array, value: float = 1.0) -> jax.Array:
    """`value` from `start_step` on, 0 before (taming's `adopt_weight`); `step` may be traced.

    Returns:
        scalar float32 [].
    """
    return jnp.where(jnp.asarray(step) >= start_step, jnp.float32(value), jnp.float32(0.0))
