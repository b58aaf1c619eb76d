"""Running implementations: guarded calls, plugins, trajectories and timings."""
