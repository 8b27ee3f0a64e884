"""The model registry over HTTP: versions, aliases and their response models."""
