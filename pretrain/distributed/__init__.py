"""Processes and collectives: joining the process group (torchrun, SLURM), gathers, synchronised BatchNorm."""
