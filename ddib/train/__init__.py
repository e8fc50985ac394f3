"""Training: the loop, data-parallel helpers, the run's log and lock, stopping on a signal."""
