"""Datasets of crystal structures with energies: one file format, importers and splits."""
