"""Known structures, novelty and uniqueness, the V.U.N. counts, and evaluate's columns for them."""

from __future__ import annotations

import pytest

from crystalgen.known import KnownStructuresError, dataset_structures, training_dataset, training_structures
from crystalgen.novelty import NoveltyIndex, first_occurrences
from crystalgen.quality import sample_quality
from crystalgen.sample import DEFAULT_CHECKPOINT

from known_helpers import reference, reference_phases

CHECKPOINTS = DEFAULT_CHECKPOINT.parent


def _strained(structure, volume_factor=1.04, shift=0.03):
    out = structure.copy()
    out.scale_lattice(out.volume * volume_factor)
    out.translate_sites([0], [shift, 0, 0], frac_coords=False)
    return out


def test_the_index_names_the_known_structure_a_strained_copy_matches():
    index = NoveltyIndex(reference_phases())
    assert len(index) == 11
    assert index.match(_strained(reference("TaB2"))) == "reference:TaB2"
    assert index.match(_strained(reference("WB2_ReB2"))) == "reference:WB2_ReB2"
    tab2_in_reb2_type = reference("WB2_ReB2").copy()
    tab2_in_reb2_type.replace_species({"W": "Ta"})
    assert index.match(tab2_in_reb2_type) is None  # a TaB2 polymorph no reference has


def test_first_occurrences_marks_repeats_of_earlier_structures():
    tab2 = reference("TaB2")
    doubled = tab2.copy()
    doubled.make_supercell([2, 1, 1])
    structures = [tab2, doubled, reference("WB2_ReB2"), None, _strained(tab2)]
    assert first_occurrences(structures) == [0, 0, 2, None, 0]
    quality = sample_quality(structures, NoveltyIndex([k for k in reference_phases() if k.label != "reference:TaB2"]))
    assert (quality.generated, quality.valid, quality.unique, quality.novel) == (5, 4, 2, 1)
    assert quality.unique_fraction == 0.5 and quality.novel_fraction == 0.5
    assert sample_quality(structures).novel is None


def test_training_split_of_the_shipped_checkpoint_is_found_by_file_name():
    path = training_dataset(CHECKPOINTS / "demo-cfm-n.pt")
    assert path.name == "demo_train.jsonl.gz" and path.is_file()  # stored as /tmp/demo_train/..., shipped copy used
    known = training_structures(CHECKPOINTS / "demo-cfm-n.pt")
    everything = dataset_structures(path)
    assert len(known) == 3465 and len(everything) == 4333  # train split of the checkpoint's README: 3,465 of 4,333
    assert all(k.label.startswith("training:") for k in known)
    held_out = {k.formula for k in everything} - {k.formula for k in known}
    assert held_out and not held_out & {k.formula for k in known}


def test_a_training_set_that_is_nowhere_is_named():
    with pytest.raises(KnownStructuresError, match="/tmp/cgmodels/perov_val.jsonl.gz does not exist here"):
        training_structures(CHECKPOINTS / "demo-ddpm.pt")


def test_evaluate_reports_memorised_training_structures_as_not_novel(tmp_path):
    from crystalgen.evaluate import evaluate

    dataset = training_dataset(CHECKPOINTS / "demo-cfm-n.pt")
    report = evaluate([CHECKPOINTS / "demo-cfm-n.pt"], dataset, split="train", steps=20, max_conditions=12,
                      device="cpu", serial=True, log=lambda _: None)
    result = report.results[0]
    assert result.novelty_against == "training split of demo_train.jsonl.gz (3465 structures)"
    assert 0 < result.mean  # samples that match their training target ...
    assert result.novel_fraction is not None and result.novel_fraction < 1  # ... are not novel
    assert 0 < result.unique_fraction <= 1 and 0 <= result.relaxable_fraction <= result.valid_fraction
    md = report.to_markdown()
    assert "| relaxable | unique (of valid) | novel (of unique) |" in md and "Novelty compared with" in md
