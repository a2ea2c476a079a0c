"""Engine setup (deepspeed.initialize), the loop, checkpoints, metrics and logging."""
