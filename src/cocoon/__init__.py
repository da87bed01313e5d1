"""Cocoon: a confidential compute open network for private AI inference."""

__version__ = "0.1.0"
