"""Inside one cell's process: its main, its setup and training steps, its record with the settings
read back, and what it measures beside the meter (the machine's load, wall clock, evaluation,
GPU facts, the environment, MFU's peak, DDP ranks)."""
