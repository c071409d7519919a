"""jobflow layer: campaign YAML -> Flow (references, generate, pre-relax, select, relax, hull) -> MongoDB.

Modules: ``campaign`` (schema), ``conditions`` (energy grid), ``candidates`` (the candidates
collection, shared with hpc), ``references`` / ``energies`` / ``hull`` (convex hull from one energy
source), ``jobs`` / ``makers`` (jobflow), ``report`` and ``cli`` (``crystalgen campaign ...``).
"""
