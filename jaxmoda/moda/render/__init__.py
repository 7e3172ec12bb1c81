"""LivePortrait-style renderer pieces in JAX: feature-volume warping by trilinear grid sampling."""
