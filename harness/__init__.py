"""The comparison harness: shared initial weights, data, checks, and the ``compare`` entry point."""
