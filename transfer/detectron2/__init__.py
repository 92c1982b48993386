"""Detection transfer on detectron2 (an external dependency; install it by its official instructions)."""
