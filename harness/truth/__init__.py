"""The truth: an oracle that shares no code with what it judges, and the tolerances."""
