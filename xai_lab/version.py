"""The package version, in a module of its own: cards and manifests record it without importing the package API."""

__version__ = "0.1.0"
