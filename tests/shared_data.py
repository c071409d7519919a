"""Where the project's offline data folder (``shared/data``) is: beside the checkout, as CI lays it."""

from __future__ import annotations

import os
from pathlib import Path


def shared_data_dir() -> Path:
    """``$CRYSTALGEN_SHARED_DATA``, else ``../shared/data`` beside the repository, else /work/shared/data."""
    if env := os.environ.get("CRYSTALGEN_SHARED_DATA"):
        return Path(env)
    beside_checkout = Path(__file__).resolve().parents[2] / "shared" / "data"
    return beside_checkout if beside_checkout.is_dir() else Path("/work/shared/data")


SHARED_DATA = shared_data_dir()
