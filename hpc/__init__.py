"""FireWorks layer: submit campaign flows, dispatch by GPU/CPU category, query and resubmit.

``crystalgen campaign submit | status``, ``crystalgen candidates``, ``crystalgen resubmit`` and
``crystalgen hpc init`` live here (registered through the ``crystalgen.cli`` entry point).
"""
