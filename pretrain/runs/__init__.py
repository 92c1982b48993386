"""Run folders all commands share: the run record and its lock, atomic files, preemption signals, how a command ends."""
