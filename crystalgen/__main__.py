"""``python -m crystalgen`` is the ``crystalgen`` command."""

from crystalgen.cli import main

main()
