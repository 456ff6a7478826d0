"""hybridformer."""
