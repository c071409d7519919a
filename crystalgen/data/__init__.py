"""Datasets of crystal structures with energies: one file format, importers, splits and samplers."""
