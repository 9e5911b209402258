"""The parts of `scripts/soak`: the host process, the simulated clients, the final checks."""
