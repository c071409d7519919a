"""jobflow layer: campaign YAML -> Flow of stages (references, generate, prerelax, select, relax, hull) -> MongoDB.

``campaign`` / ``resources`` (the campaign file's schema), ``stages`` (the stage enum and the tag every
job carries), ``makers/`` (one Maker per stage, composed by ``CampaignMaker``), ``schemas`` (the stored
documents), ``candidates`` (the candidates collection and its one query builder), ``conditions``,
``references`` / ``energies`` / ``hull`` / ``dedupe`` (ranking from one energy source), ``report`` and
``cli`` (``crystalgen campaign ...``).
"""
