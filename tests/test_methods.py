"""The seven methods: each learns (loss goes down) and samples structures that decode."""

from __future__ import annotations

import pytest
import torch

from crystalgen.methods import METHODS, MethodConfig, Normalizer, build_method, method_spec, row_mask
from crystalgen.methods.diffusion import cosine_alphas_cumprod, inference_timesteps
from crystalgen.models.unet import UNet1D, UNetConfig
from crystalgen.representation import decode_batch, encode_batch
from crystalgen.training_data import TensorSet, encode_records, modification_pairs

from model_helpers import TINY_MODEL, records

TRAINED_METHODS = ["ddpm", "cfm-n", "cfm-u", "regression", "mod-regression", "mod-palette", "mod-cfm"]


@pytest.fixture(scope="module")
def generation_batch():
    recs = records(16)
    return encode_batch([r.pymatgen for r in recs], [r.formation_energy_per_atom for r in recs])


@pytest.fixture(scope="module")
def modification_batch():
    recs = records(0, 16)
    tensors, kept = encode_records(recs)
    index = {r.id: i for i, r in enumerate(kept)}
    pairs = modification_pairs(kept)[::8][:16]  # spread over initial and target structures
    target = torch.tensor([index[b.id] for _, b in pairs])
    init = torch.tensor([index[a.id] for a, _ in pairs])
    out = {k: v[target] for k, v in tensors.items()}
    out.update(init_coords_lattice=tensors["coords_lattice"][init], init_nsites=tensors["nsites"][init],
               energy_diff=tensors["formation_energy"][target] - tensors["formation_energy"][init])
    return TensorSet(out).batch(range(len(pairs)))


def _method(name: str, batch: dict, steps: int = 4):
    spec = method_spec(name)
    network = UNet1D(UNetConfig(**TINY_MODEL, in_channels=spec.in_channels))
    scalar = batch["energy_diff"] if spec.task == "modification" else batch["formation_energy"]
    structures = torch.cat([batch["coords_lattice"], batch.get("init_coords_lattice", batch["coords_lattice"])])
    return build_method(MethodConfig(name=name, inference_steps=steps, train_timesteps=100),
                        network, Normalizer.fit(structures, scalar))


def test_seven_trained_methods_are_registered():
    assert {method_spec(n).family for n in TRAINED_METHODS} == {s.family for s in METHODS.values()}
    assert len({method_spec(n).family for n in TRAINED_METHODS}) == 7


@pytest.mark.parametrize("name", TRAINED_METHODS)
def test_method_learns_and_samples_decodable_structures(name, generation_batch, modification_batch):
    torch.manual_seed(0)
    batch = modification_batch if method_spec(name).task == "modification" else generation_batch
    method = _method(name, batch)
    optimizer = torch.optim.Adam(method.parameters(), lr=3e-3)

    def fixed_noise_loss() -> float:  # same t and noise draws before and after training
        torch.manual_seed(123)
        with torch.no_grad():
            return sum(method.loss(batch).item() for _ in range(4)) / 4

    before = fixed_noise_loss()
    torch.manual_seed(0)
    for _ in range(25):
        loss = method.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = fixed_noise_loss()
    assert after < 0.85 * before, (before, after)

    x = method.sample(batch, steps=3, generator=[torch.Generator().manual_seed(i) for i in range(len(batch["nsites"]))])
    assert x.shape == (len(batch["nsites"]), 64, 3)
    assert torch.isfinite(x).all()
    assert (x * (1 - row_mask(batch["nsites"]))).abs().max() == 0  # padding rows stay zero
    coords = x[:, :60][row_mask(batch["nsites"])[:, :60, 0].bool()]
    assert coords.min() >= 0 and coords.max() < 1
    structures = decode_batch(x, batch["elements"])
    assert all(s is not None for s in structures)
    for s, n, onehot in zip(structures, batch["nsites"], batch["elements"]):
        assert len(s) == n and s.volume > 0
        assert [site.specie.Z for site in s] == (onehot[:n].argmax(-1) + 1).tolist()


def test_samples_do_not_depend_on_batch_composition(generation_batch):
    """One generator per sample: sample i is the same alone or inside a batch."""
    method = _method("ddpm", generation_batch).eval()
    gens = lambda: [torch.Generator().manual_seed(100 + i) for i in range(4)]  # noqa: E731
    four = {k: v[:4] for k, v in generation_batch.items()}
    full = method.sample(four, steps=5, generator=gens())
    alone = method.sample({k: v[2:3] for k, v in four.items()}, steps=5, generator=gens()[2:3])
    torch.testing.assert_close(full[2:3], alone, atol=1e-5, rtol=1e-5)
    again = method.sample(four, steps=5, generator=gens())
    torch.testing.assert_close(full, again)


def test_ddim_is_deterministic_and_ddpm_is_not_for_the_same_start(generation_batch):
    method = _method("ddpm", generation_batch).eval()
    ddim = build_method(method.config, method.network, method.normalizer, name="ddim")
    b = {k: v[:2] for k, v in generation_batch.items()}
    # same start noise, different global state: DDIM (eta = 0) ignores it, both use only the generator
    a = ddim.sample(b, steps=4, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(123)
    c = ddim.sample(b, steps=4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, c)
    d = method.sample(b, steps=4, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(a, d)


def test_cosine_schedule_and_trailing_timesteps():
    ab = cosine_alphas_cumprod(1000)
    assert ab[0] > 0.9999 and ab[-1] < 1e-6 and (ab[1:] < ab[:-1]).all()
    steps = inference_timesteps(1000, 100)
    assert steps[0] == 999 and steps[-1] == 9 and len(steps) == 100 and steps == sorted(steps, reverse=True)
    assert inference_timesteps(1000, 1000) == list(range(999, -1, -1))
    with pytest.raises(ValueError, match="steps must be"):
        inference_timesteps(1000, 0)


def test_normalizer_round_trip_and_serialisation(generation_batch):
    x = generation_batch["coords_lattice"]
    norm = Normalizer.fit(x, generation_batch["formation_energy"])
    z = norm.encode(x)
    assert z[:, 61:].mean().abs() < 1e-4  # standardised lattice
    torch.testing.assert_close(Normalizer.from_dict(norm.to_dict()).decode(z), x, atol=1e-5, rtol=0)


def test_sampling_across_families_is_refused(generation_batch):
    method = _method("cfm-n", generation_batch)
    with pytest.raises(ValueError, match="cannot be sampled as 'ddpm'"):
        build_method(method.config, method.network, method.normalizer, name="ddpm")
    with pytest.raises(ValueError, match="unknown method"):
        method_spec("gan")
    with pytest.raises(ValueError, match="in_channels=6"):
        build_method(MethodConfig(name="mod-palette"), UNet1D(UNetConfig(**TINY_MODEL)), Normalizer())


def test_cfm_midpoint_solver_runs_two_evaluations_per_step(generation_batch):
    method = _method("cfm-n", generation_batch)
    calls = []
    method.network.register_forward_hook(lambda *_: calls.append(1))
    method.sample({k: v[:2] for k, v in generation_batch.items()}, steps=3)
    assert len(calls) == 3
    calls.clear()
    method.config = method.config.model_copy(update={"solver": "midpoint"})
    method.sample({k: v[:2] for k, v in generation_batch.items()}, steps=3)
    assert len(calls) == 6
