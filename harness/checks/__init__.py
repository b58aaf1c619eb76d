"""Checks of each implementation against the truth, and the one verdict drawn from them."""
