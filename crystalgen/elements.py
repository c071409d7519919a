"""Per-element feature table: 22 normalised properties for Z = 1..103.

The table is built once from ``mendeleev`` (its wheel ships an SQLite database, so building
works offline) and shipped as ``crystalgen/assets/element_properties.json``. Loading reads only
that file, so model code never opens the mendeleev database.

Columns (``FEATURE_NAMES``):

* 19 continuous properties, each z-scored over Z = 1..103 using the elements where it is known;
  an unknown value becomes 0 *after* normalisation, i.e. the mean of the known ones;
* 3 chemical-family flags (metal / metalloid / non-metal), left as 0 or 1.

Every column varies across the 103 elements (no dead columns; ``rebuild_table`` checks it).
Rebuild with ``python -m crystalgen.elements`` after a mendeleev upgrade.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from crystalgen.layout import MAX_Z

TABLE_PATH = Path(__file__).parent / "assets" / "element_properties.json"

CONTINUOUS_FEATURES = (
    "atomic_number",
    "period",
    "group",  # unknown for the f-block series -> mean after normalisation
    "atomic_weight",  # u
    "atomic_radius",  # pm
    "covalent_radius_pyykko",  # pm
    "electronegativity_pauling",
    "mendeleev_number",
    "pettifor_number",
    "log_atomic_volume",  # ln(cm^3/mol), atomic_weight / density (log: gases would dominate)
    "electron_affinity",  # eV
    "first_ionization_energy",  # eV
    "shannon_radius_mean",  # pm, mean ionic radius over all tabulated charges/coordinations
    "shannon_cation_radius_mean",  # pm, charge > 0
    "shannon_anion_radius_mean",  # pm, charge < 0
    "oxidation_state_max",  # common ("main") oxidation states
    "oxidation_state_min",
    "oxidation_state_mean",
    "valence_electrons",
)
FLAG_FEATURES = ("is_metal", "is_metalloid", "is_nonmetal")
FEATURE_NAMES = CONTINUOUS_FEATURES + FLAG_FEATURES

_METAL_SERIES = {
    "Alkali metals",
    "Alkaline earth metals",
    "Transition metals",
    "Poor metals",
    "Lanthanides",
    "Actinides",
}
_NONMETAL_SERIES = {"Nonmetals", "Halogens", "Noble gases"}


@lru_cache(maxsize=1)
def property_table() -> np.ndarray:
    """The (103, 22) float32 table; row Z-1 holds element Z. Read from the shipped file."""
    with open(TABLE_PATH, encoding="utf-8") as fh:
        payload = json.load(fh)
    if tuple(payload["feature_names"]) != FEATURE_NAMES:
        raise RuntimeError(f"{TABLE_PATH} was built for other features; rebuild with `python -m crystalgen.elements`")
    table = np.asarray(payload["table"], dtype=np.float32)
    table.setflags(write=False)
    return table


def properties_of(z: int) -> np.ndarray:
    """The 22 features of the element with atomic number ``z`` (1..103)."""
    if not 1 <= z <= MAX_Z:
        raise ValueError(f"atomic number {z} outside 1..{MAX_Z}")
    return property_table()[z - 1]


def _raw_table() -> np.ndarray:
    """Un-normalised values from mendeleev, NaN where unknown: shape (103, 22)."""
    from mendeleev import element
    from mendeleev.fetch import fetch_table

    elements = fetch_table("elements").set_index("atomic_number").loc[1:MAX_Z]
    series = fetch_table("series").set_index("id")["name"]
    radii = fetch_table("ionicradii")
    oxidation = fetch_table("oxidationstates")
    oxidation = oxidation[oxidation["category"] == "main"]
    ionization = fetch_table("ionizationenergies")
    first_ie = ionization[ionization["ion_charge"] == 0].set_index("atomic_number")["ionization_energy"]

    def per_z(frame, column, reducer, where=None):
        if where is not None:
            frame = frame[where(frame)]
        return frame.groupby("atomic_number")[column].agg(reducer).reindex(range(1, MAX_Z + 1))

    columns = {
        "atomic_number": np.arange(1, MAX_Z + 1, dtype=float),
        "period": elements["period"],
        "group": elements["group_id"],
        "atomic_weight": elements["atomic_weight"],
        "atomic_radius": elements["atomic_radius"],
        "covalent_radius_pyykko": elements["covalent_radius_pyykko"],
        "electronegativity_pauling": elements["en_pauling"],
        "mendeleev_number": elements["mendeleev_number"],
        "pettifor_number": elements["pettifor_number"],
        "log_atomic_volume": np.log(elements["atomic_weight"] / elements["density"]),
        "electron_affinity": elements["electron_affinity"],
        "first_ionization_energy": first_ie.reindex(range(1, MAX_Z + 1)),
        "shannon_radius_mean": per_z(radii, "ionic_radius", "mean"),
        "shannon_cation_radius_mean": per_z(radii, "ionic_radius", "mean", lambda f: f["charge"] > 0),
        "shannon_anion_radius_mean": per_z(radii, "ionic_radius", "mean", lambda f: f["charge"] < 0),
        "oxidation_state_max": per_z(oxidation, "oxidation_state", "max"),
        "oxidation_state_min": per_z(oxidation, "oxidation_state", "min"),
        "oxidation_state_mean": per_z(oxidation, "oxidation_state", "mean"),
        "valence_electrons": [float(element(z).nvalence()) for z in range(1, MAX_Z + 1)],
    }
    family = elements["series_id"].map(series)
    columns["is_metal"] = family.isin(_METAL_SERIES).astype(float)
    columns["is_metalloid"] = (family == "Metalloids").astype(float)
    columns["is_nonmetal"] = family.isin(_NONMETAL_SERIES).astype(float)
    return np.column_stack([np.asarray(columns[name], dtype=float) for name in FEATURE_NAMES])


def rebuild_table(path: Path = TABLE_PATH) -> np.ndarray:
    """Recompute the table from mendeleev, normalise it and write it to ``path``."""
    raw = _raw_table()
    n_cont = len(CONTINUOUS_FEATURES)
    mean = np.nanmean(raw[:, :n_cont], axis=0)
    std = np.nanstd(raw[:, :n_cont], axis=0)
    table = raw.copy()
    table[:, :n_cont] = (raw[:, :n_cont] - mean) / std
    table = np.nan_to_num(table, nan=0.0)
    dead = [name for name, col in zip(FEATURE_NAMES, table.T) if np.ptp(col) == 0]
    if dead:
        raise RuntimeError(f"dead (constant) feature columns: {dead}")
    import mendeleev

    payload = {
        "feature_names": list(FEATURE_NAMES),
        "normalisation": "continuous columns: (x - mean) / std over Z=1..103 with known values, "
        "then unknown -> 0; flag columns: 0/1",
        "mean": dict(zip(CONTINUOUS_FEATURES, mean.tolist())),
        "std": dict(zip(CONTINUOUS_FEATURES, std.tolist())),
        "mendeleev_version": mendeleev.__version__,
        "table": np.round(table, 6).tolist(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    property_table.cache_clear()
    return table.astype(np.float32)


if __name__ == "__main__":
    rebuild_table()
    print(f"wrote {TABLE_PATH}")
