"""Sampling over HTTP: one answer path, limits, ETags, bulk files, batching, generator cache."""
