"""GLANN (genbench/models/glann.py): GLO's codes on the sphere, the Laplacian pyramid and Lap1 against hand-computed
values, IMLE's nearest-neighbour assignment against a loop, the shared GAN generator, and a tiny end-to-end run
through the trainer (determinism, resume after a kill, load_trained + sample)."""
from __future__ import annotations

import pytest
import torch

from genbench import GenbenchError
from genbench.models import Optimization, build_model
from genbench.models import gans
from genbench.models.glann import (GLANNConfig, imle_loss, lap1, laplacian_pyramid, nearest_mapped,
                                   project_to_sphere, reconstruct)

TINY = {"latent_dim": 8, "hidden": 4, "lap_levels": 2, "glo_steps": 6, "noise_dim": 8, "imle_hidden": 16,
        "imle_candidates_per_code": 3, "val_samples": 16}


def _model(n=32, **overrides):
    torch.manual_seed(0)
    model = build_model("glann", {**TINY, **overrides}, (1, 8, 8))
    model.attach_training_set(n)
    return model, Optimization(model.configure_optimizers(1e-3, 0.0), None, None)


# ------------------------------------------------------------------ GLO
def test_glo_codes_stay_exactly_on_the_unit_sphere_and_only_the_batch_codes_move():
    model, opt = _model(glo_code_lr=0.5)
    x = torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    assert torch.allclose(model.codes.norm(dim=1), torch.ones(32), atol=1e-6)
    for step in range(4):
        index = torch.arange(8 * step, 8 * step + 4)     # rows 4..7 of each block of 8 are never in a batch
        before = model.codes.detach().clone()
        model.training_step((x[index], index), step, opt, g)
        after = model.codes.detach()
        assert (after.norm(dim=1) - 1).abs().max() <= 1e-6
        assert not torch.equal(after[index], before[index])
        rest = torch.ones(32, dtype=torch.bool)
        rest[index] = False
        assert torch.equal(after[rest], before[rest])    # lazy Adam: absent codes neither move nor drift


# ------------------------------------------------------------------ the Laplacian pyramid and Lap1
@pytest.mark.parametrize("shape,levels", [((2, 3, 16, 12), 3), ((2, 1, 28, 28), 4), ((1, 1, 8, 8), 1)])
def test_the_pyramid_reconstructs_the_image_and_lap1_of_identical_images_is_zero(shape, levels):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(3)) * 2 - 1
    pyramid = laplacian_pyramid(x, levels)
    assert len(pyramid) == levels and pyramid[0].shape == x.shape
    torch.testing.assert_close(reconstruct(pyramid), x, atol=1e-6, rtol=0)
    assert torch.equal(lap1(x, x.clone(), levels), torch.zeros(shape[0]))


@pytest.mark.parametrize("side,levels", [(16, 3), (28, 3), (28, 4)])
def test_lap1_of_a_constant_offset_is_the_coarsest_level_only(side, levels):
    """x' = x + c changes only the low-pass residual (by c at each of its entries); by hand:
    Lap1 = 2^{2(J-1)} * (entries of the residual) * |c| / (entries of the image)."""
    c = 0.25
    x = torch.rand(2, 1, side, side, generator=torch.Generator().manual_seed(4)) * 2 - 1
    a, b = laplacian_pyramid(x, levels), laplacian_pyramid(x + c, levels)
    for band_a, band_b in zip(a[:-1], b[:-1]):
        torch.testing.assert_close(band_a, band_b, atol=1e-6, rtol=0)
    coarse = side
    for _ in range(levels - 1):
        coarse = (coarse + 1) // 2                     # every second pixel, odd sides round up
    expected = 4 ** (levels - 1) * coarse * coarse * c / (side * side)
    torch.testing.assert_close(lap1(x, x + c, levels), torch.full((2,), expected), atol=1e-5, rtol=0)
    if (side, levels) in ((16, 3), (28, 3)):
        assert expected == c                             # sides divisible by 2^(J-1): every level weighs equally


# ------------------------------------------------------------------ IMLE
def test_nearest_mapped_equals_a_brute_force_loop():
    g = torch.Generator().manual_seed(5)
    codes, mapped = torch.randn(17, 6, generator=g), torch.randn(50, 6, generator=g)
    expected = []
    for z in codes:
        best, best_d = None, float("inf")
        for k, p in enumerate(mapped):
            d = sum((float(a) - float(b)) ** 2 for a, b in zip(z, p))
            if d < best_d:
                best, best_d = k, d
        expected.append(best)
    assert nearest_mapped(codes, mapped).tolist() == expected
    nearest = mapped[torch.tensor(expected)]
    torch.testing.assert_close(imle_loss(codes, mapped), (codes - nearest).pow(2).sum(1).mean())


def test_imle_steps_move_the_mapped_points_towards_their_codes():
    model, opt = _model(n=64, glo_steps=1, imle_lr=1e-2)
    g = torch.Generator().manual_seed(6)
    index = torch.arange(64)
    codes = model.codes.detach().clone()
    generator_before = {k: v.clone() for k, v in model.generator.state_dict().items()}
    e = torch.randn(640, 8, generator=torch.Generator().manual_seed(7))   # a fixed pool to measure with

    def objective():
        with torch.no_grad():
            return float(imle_loss(codes, model.mapped(e)))
    start = objective()
    # one step on exactly these candidates (the step draws them from its generator: replay its draw)
    step_gen = torch.Generator().manual_seed(8)
    e_step = torch.randn(3 * 64, 8, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        assigned_step = nearest_mapped(codes, model.mapped(e_step))
        d_before = (codes - model.mapped(e_step)[assigned_step]).pow(2).sum(1).mean()
    model.training_step((torch.zeros(64, 1, 8, 8, dtype=torch.uint8), index), 1, opt, step_gen)
    with torch.no_grad():
        d_after = (codes - model.mapped(e_step)[assigned_step]).pow(2).sum(1).mean()
    assert d_after < d_before
    for step in range(2, 40):
        model.training_step((torch.zeros(64, 1, 8, 8, dtype=torch.uint8), index), step, opt, g)
    assert objective() < 0.9 * start
    assert torch.equal(model.codes.detach(), codes)                       # GLO is frozen in the IMLE stage
    assert all(torch.equal(v, generator_before[k]) for k, v in model.generator.state_dict().items())


# ------------------------------------------------------------------ the shared generator
def test_the_generator_is_the_gan_generator_with_the_gans_parameter_count():
    mnist_gan = {"latent_dim": 64, "hidden": 32}                         # params.yaml's &gan_mnist
    gan = build_model("sgan", mnist_gan, (1, 28, 28))
    model = build_model("glann", mnist_gan, (1, 28, 28))
    assert type(model.generator) is gans.ImageGenerator and type(gan.generator) is gans.ImageGenerator
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model.generator) == count(gan.generator)
    assert GLANNConfig().latent_dim == 64 and GLANNConfig().hidden == 32  # the defaults are the MNIST GANs'


# ------------------------------------------------------------------ end to end through the trainer
def _job(steps=12):
    from genbench.config import HarnessConfig, RunConfig, TrainConfig
    from genbench.train import Job

    spec = RunConfig(model="glann", dataset="mnist", model_config=dict(TINY),
                     train=TrainConfig(steps=steps, batch_size=8, lr=1e-3, checkpoint_every=4, log_every=2, val_n=16))
    return Job("glann_tiny", 0, spec, HarnessConfig(num_threads=1, progress=False), "unused")


def _data():
    g = torch.Generator().manual_seed(9)
    return (torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8, generator=g),
            torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8, generator=g))


def test_train_is_deterministic_resumes_exactly_and_loads_for_sampling(tmp_path):
    import json

    from genbench.train import load_trained, train

    data = _data()
    a = train(_job(), tmp_path / "a", data=data)
    b = train(_job(), tmp_path / "b", data=data)
    assert a["status"] == b["status"] == "completed" and a["checkpoint_selection"] == "last"
    rows = [json.loads(line) for line in (tmp_path / "a" / "stats.jsonl").read_text().splitlines()]
    assert [("lap1" in r, "imle" in r) for r in rows] == [(True, False)] * 3 + [(False, True)] * 3
    assert killed_then_resumed_equals(tmp_path, data)

    samples = []
    for run in ("a", "b"):
        model, meta = load_trained(tmp_path / run)
        assert model.codes.shape == (40, 8) and meta["step"] == 12
        samples.append(model.sample(5, torch.Generator().manual_seed(10)))
    assert samples[0].shape == (5, 1, 8, 8) and samples[0].dtype == torch.uint8
    assert torch.equal(samples[0], samples[1])
    assert (load_trained(tmp_path / "a")[0].codes.norm(dim=1) - 1).abs().max() <= 1e-6
    vloss = model.validation_loss(data[1], torch.Generator().manual_seed(11))
    assert vloss.shape == (16,) and bool(torch.isfinite(vloss).all())


def killed_then_resumed_equals(tmp_path, data) -> bool:
    """Killed twice (in GLO after step 5, then in IMLE after step 9), resumed: the weights, both optimisers'
    states (the codes' lazy moments too) and the log equal an uninterrupted run's."""
    from genbench.train import train

    assert train(_job(), tmp_path / "k", data=data, stop_after=5)["status"] == "interrupted"
    assert train(_job(), tmp_path / "k", data=data, stop_after=4)["status"] == "interrupted"
    assert train(_job(), tmp_path / "k", data=data)["status"] == "completed"
    full = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    resumed = torch.load(tmp_path / "k" / "checkpoint.pt", weights_only=True)
    same_model = all(torch.equal(full["model"][k], resumed["model"][k]) for k in full["model"])
    codes_state = lambda c: c["optimizers"]["glo"]["state"]  # noqa: E731
    same_opt = all(torch.equal(v, codes_state(resumed)[i][k]) for i, s in codes_state(full).items() for k, v in s.items())
    strip = lambda p: [{k: v for k, v in __import__("json").loads(l).items() if k != "images_per_s"}  # noqa: E731,E741
                       for l in p.read_text().splitlines()]
    return same_model and same_opt and strip(tmp_path / "a" / "stats.jsonl") == strip(tmp_path / "k" / "stats.jsonl")


# ------------------------------------------------------------------ bad settings
@pytest.mark.parametrize("key,value", [("latent_dim", 0), ("glo_steps", 0), ("imle_candidates_per_code", 0),
                                       ("glo_code_lr", 0.0), ("glo_generator_lr", -1e-3), ("imle_lr", 0.0),
                                       ("lap_levels", 0), ("noise_dim", 0)])
def test_bad_settings_are_refused_by_name(key, value):
    from genbench.config import _model_value_problems

    with pytest.raises(GenbenchError, match=key):
        build_model("glann", {key: value}, (1, 28, 28))
    assert any(key in p for p in _model_value_problems(GLANNConfig, {key: value}, "m"))


def test_other_refusals():
    with pytest.raises(GenbenchError, match="lap_levels"):
        build_model("glann", {"lap_levels": 5}, (1, 8, 8))
    with pytest.raises(GenbenchError, match="divisible by 4"):
        build_model("glann", {}, (1, 10, 10))
    model = build_model("glann", TINY, (1, 8, 8))
    with pytest.raises(GenbenchError, match="attach_training_set"):
        model.configure_optimizers(1e-3, 0.0)
    assert torch.equal(project_to_sphere(torch.tensor([[3.0, 4.0]])), torch.tensor([[0.6, 0.8]]))
