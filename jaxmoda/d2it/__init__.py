"""D²iT: dynamic-grain diffusion (entropy grain maps, Dynamic VAE, grain and content transformers)."""
