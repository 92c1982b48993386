"""Training machinery: building from a config, the trainer loop, runtime choices, optimisers and EMA, checkpoints, the step log, the run's outputs."""
