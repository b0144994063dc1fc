"""Data layer: the synthetic generator, importers, splitting and dataset storage with cards."""
