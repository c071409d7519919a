"""FireWorks layer: submit campaign flows routed by stage, worker templates, status, queries and resubmission.

``crystalgen campaign submit | status``, ``crystalgen candidates``, ``crystalgen resubmit`` and
``crystalgen hpc init`` live here (registered through the ``crystalgen.cli`` entry point).
"""
