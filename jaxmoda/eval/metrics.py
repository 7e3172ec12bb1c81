"""Sample-quality metrics on network features: FID / sFID, Inception Score, improved precision/recall.

The feature extractor (InceptionV3's 2048-d pool features and 1008-way logits for FID and IS, its
spatial `mixed_6/conv` features for sFID) runs in JAX; these functions take its outputs.

- Fréchet distance between Gaussians fitted to two feature sets (Heusel et al., 2017):
  |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)). Statistics and the matrix square root are computed
  in float64 on the host: 2048 x 2048 covariances lose digits in float32. The trace of the square
  root uses Tr((S1 S2)^(1/2)) = Tr((A S2 A)^(1/2)) with A = S1^(1/2), a symmetric PSD matrix, so only
  symmetric eigendecompositions are needed (no complex parts to discard, unlike scipy.linalg.sqrtm).
- Inception Score (Salimans et al., 2016): exp E_x KL(p(y|x) || p(y)), averaged over splits.
- Improved precision and recall (Kynkäänniemi et al., 2019): each set's manifold is the union of
  balls around its points with radius the distance to the k-th nearest neighbour in the same set;
  precision = share of generated points inside the real manifold, recall = share of real points
  inside the generated one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def feature_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], covariance [D, D]) in float64 of features [N, D] (N >= 2)."""
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"features must be [N >= 2, D], got shape {x.shape}")
    return x.mean(0), np.cov(x, rowvar=False)


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (FID when the statistics are Inception's)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
        raise ValueError(f"statistics do not match: means {mu1.shape} / {mu2.shape}, covariances {s1.shape} / {s2.shape}")
    a = _sqrt_psd(s1)
    m = a @ s2 @ a
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)


def fid_from_features(features_a, features_b) -> float:
    return frechet_distance(*feature_stats(features_a), *feature_stats(features_b))


def inception_score(logits, splits: int = 10) -> tuple[float, float]:
    """(mean, std) over `splits` equal parts of exp(E KL(p(y|x) || p(y))) from classifier logits [N, C]."""
    logits = jnp.asarray(logits, jnp.float32)
    n = logits.shape[0]
    if n < splits:
        raise ValueError(f"inception_score needs at least splits={splits} samples, got {n}")
    logp = jax.nn.log_softmax(logits, axis=-1)
    scores = []
    for part in np.array_split(np.arange(n), splits):
        lp = logp[part]
        log_marginal = jax.nn.logsumexp(lp, axis=0) - jnp.log(lp.shape[0])
        kl = jnp.sum(jnp.exp(lp) * (lp - log_marginal), axis=-1)
        scores.append(float(jnp.exp(jnp.mean(kl))))
    return float(np.mean(scores)), float(np.std(scores))


@jax.jit
def _squared_distances(a: jax.Array, b: jax.Array) -> jax.Array:
    d = jnp.sum(a * a, 1)[:, None] - 2.0 * a @ b.T + jnp.sum(b * b, 1)[None, :]
    return jnp.maximum(d, 0.0)


def _kth_radii(x: jax.Array, k: int, batch: int) -> jax.Array:
    """Squared distance of each row to its k-th nearest other row."""
    out = []
    for s in range(0, x.shape[0], batch):
        d = _squared_distances(x[s:s + batch], x)
        out.append(jnp.sort(d, axis=1)[:, k])  # column 0 is the point itself (distance 0)
    return jnp.concatenate(out)


def _inside(points: jax.Array, centres: jax.Array, radii: jax.Array, batch: int) -> jax.Array:
    out = []
    for s in range(0, points.shape[0], batch):
        d = _squared_distances(points[s:s + batch], centres)
        out.append(jnp.any(d <= radii[None, :], axis=1))
    return jnp.concatenate(out)


def precision_recall(real, fake, k: int = 3, batch: int = 1024) -> tuple[float, float]:
    """Improved precision and recall of `fake` [M, D] against `real` [N, D] with k-NN manifolds."""
    real, fake = jnp.asarray(real, jnp.float32), jnp.asarray(fake, jnp.float32)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features must be [N, D] with the same D, got {real.shape} and {fake.shape}")
    if min(real.shape[0], fake.shape[0]) <= k:
        raise ValueError(f"precision_recall needs more than k={k} points in each set")
    precision = _inside(fake, real, _kth_radii(real, k, batch), batch).mean()
    recall = _inside(real, fake, _kth_radii(fake, k, batch), batch).mean()
    return float(precision), float(recall)
