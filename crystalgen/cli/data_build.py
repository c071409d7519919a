"""``crystalgen data build-prototypes``: the offline polymorph dataset (potentials issue)."""
