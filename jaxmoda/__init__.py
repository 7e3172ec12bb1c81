"""jaxmoda: D²iT and MoDA diffusion systems in JAX/Flax, sharded over device meshes."""

__version__ = "0.1.0"
