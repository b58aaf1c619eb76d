"""Differential fuzzing: the space of configurations, the search, and its report."""
