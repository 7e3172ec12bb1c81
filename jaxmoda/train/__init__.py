"""Training engine: the TrainState pytree, pure train steps, the loop, checkpoints and metrics."""
