"""The package version (read by checkpoints, which record the version that wrote them)."""

__version__ = "0.1.0"
