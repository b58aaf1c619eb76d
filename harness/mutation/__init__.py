"""The mutation-testing campaign behind ``python -m harness.mutate``: which implementations use a module,
the per-mutant comparison, the cosmic-ray session, and the report."""
