"""Shared neural-network blocks: attention, embeddings, DiT blocks, scanned stacks, logical axes."""
