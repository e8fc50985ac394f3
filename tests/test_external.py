"""Foreign models behind ddib's one denoiser interface, checked against their own implementations on the same
weights: diffusers' UNet2DModel and schedulers, guided-diffusion's UNetModel."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ddib.bridge import ode
from ddib.errors import DDIBError
from ddib.model.denoiser import Denoiser
from ddib.model.diffusion import Diffusion, DiffusionConfig
from ddib.model.external import load_external
from ddib.model.nets import UNetConfig, build_network

from .external_models import SIZE, assert_round_trip_converges, save_classifier, save_guided, save_pipeline, tiny_unet

pytest.importorskip("diffusers")
SCHEDULES = [("linear", "epsilon"), ("squaredcos_cap_v2", "v_prediction"), ("scaled_linear", "sample")]


def _images(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, 3, SIZE, SIZE), generator=g) * 2 - 1


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_sigma_table_is_the_schedulers_alphas_cumprod(tmp_path, schedule):
    from diffusers import DDPMScheduler

    model = load_external(save_pipeline(tmp_path / "m", schedule=schedule), "diffusers")
    abar = DDPMScheduler(num_train_timesteps=1000, beta_schedule=schedule).alphas_cumprod.double()
    n = torch.arange(1000, dtype=torch.float64)
    sigma_bar = model.schedule.sigma_bar(n / 999)
    torch.testing.assert_close(1 / (1 + sigma_bar**2), abar, rtol=1e-5, atol=1e-7)
    # (diffusers keeps ᾱ in float32, so 1 − ᾱ_0 ≈ 1e-4 carries its rounding: ddib's table is float64)
    assert model.schedule.sigma_min == pytest.approx(math.sqrt((1 - abar[0]) / abar[0]), rel=1e-3)
    assert model.schedule.sigma_max == pytest.approx(math.sqrt((1 - abar[-1]) / abar[-1]), rel=1e-5)
    # between entries the timestep is linear in log σ̄, and t(σ̄) inverts σ̄(t)
    mid = model.schedule.sigma_bar(torch.tensor([10.5 / 999], dtype=torch.float64))
    assert float(mid) == pytest.approx(math.sqrt(float(sigma_bar[10] * sigma_bar[11])), rel=1e-12)
    t = torch.rand(50, dtype=torch.float64)
    torch.testing.assert_close(model.schedule.t_of_sigma_bar(model.schedule.sigma_bar(t)), t)


def test_trained_betas_give_their_own_table(tmp_path):
    betas = torch.linspace(1e-3, 0.05, 200, dtype=torch.float64)
    folder = save_pipeline(tmp_path / "m", trained_betas=betas.tolist(), num_train_timesteps=200)
    model = load_external(folder, "diffusers")
    abar = torch.cumprod(1 - betas, 0)
    assert model.schedule.num_timesteps == 200
    torch.testing.assert_close(1 / (1 + model.schedule.sigma_bar(torch.arange(200.0).double() / 199) ** 2), abar)


@pytest.mark.parametrize("schedule,prediction", SCHEDULES)
def test_eps_at_integer_timesteps_is_the_unets_output(tmp_path, schedule, prediction):
    from diffusers import DDPMScheduler

    unet = tiny_unet()
    model = load_external(save_pipeline(tmp_path / "m", unet, schedule=schedule, prediction=prediction), "diffusers")
    x, n = _images(3), torch.tensor([0, 17, 999])
    with torch.no_grad():
        out = unet(x, n).sample
    abar = DDPMScheduler(num_train_timesteps=1000, beta_schedule=schedule).alphas_cumprod[n].view(-1, 1, 1, 1)
    a, s = abar.sqrt(), (1 - abar).sqrt()
    expected = {"epsilon": out, "v_prediction": a * out + s * x, "sample": (x - a * out) / s}[prediction]
    torch.testing.assert_close(model.eps(x, n.double() / 999), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("schedule,prediction", SCHEDULES[:2])
def test_ddim_on_the_schedulers_timesteps_is_diffusers_ddim(tmp_path, schedule, prediction):
    """--solver ddim through the scheduler's own timesteps: DDIMScheduler (η = 0) decodes, DDIMInverseScheduler's
    update encodes (with ε̂ taken at the state's own timestep, the probability-flow ODE's Euler step)."""
    from diffusers import DDIMInverseScheduler, DDIMScheduler

    unet = tiny_unet()
    model = load_external(save_pipeline(tmp_path / "m", unet, schedule=schedule, prediction=prediction), "diffusers")
    kw = dict(num_train_timesteps=1000, beta_schedule=schedule, prediction_type=prediction, set_alpha_to_one=False,
              clip_sample=False)  # fmt: skip
    fwd, inv = DDIMScheduler(**kw), DDIMInverseScheduler(**kw)
    fwd.set_timesteps(20)
    inv.set_timesteps(20)
    x = _images(2, seed=1)
    with torch.no_grad():
        decoded = x.clone()
        for n in fwd.timesteps:
            decoded = fwd.step(unet(decoded, n).sample, n, decoded).prev_sample
        encoded = x.clone()
        for n in inv.timesteps:
            encoded = inv.step(unet(encoded, max(int(n) - 50, 0)).sample, n, encoded).prev_sample
    grid = model.schedule.sigma_bar(inv.timesteps.double() / 999)  # increasing σ̄ at 0, 50, …, 950
    ddim = ode.ODEOptions(solver="ddim")
    torch.testing.assert_close(ode.decode(model, x, ddim, grid=grid), decoded, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ode.encode(model, x, ddim, grid=grid), encoded, rtol=1e-4, atol=1e-4)


def test_clipped_decode_is_diffusers_ddim_with_clip_sample_and_encoding_never_clips(tmp_path):
    """--clip: DDIMScheduler(clip_sample=True) with ε recomputed from the clipped x̂₀ (guided-diffusion's
    clip_denoised); an encode with the option is the plain encode."""
    from diffusers import DDIMScheduler

    unet = tiny_unet()
    model = load_external(save_pipeline(tmp_path / "m", unet), "diffusers")
    fwd = DDIMScheduler(num_train_timesteps=1000, set_alpha_to_one=False, clip_sample=True)
    fwd.set_timesteps(20)
    x = _images(2, seed=3) * 3  # far outside [-1, 1] at the latent end, so x̂₀ is clipped from the first step
    with torch.no_grad():
        decoded = x.clone()
        for n in fwd.timesteps:
            decoded = fwd.step(unet(decoded, n).sample, n, decoded, use_clipped_model_output=True).prev_sample
    grid = model.schedule.sigma_bar(torch.arange(0, 1000, 50).double() / 999)
    clipped, plain = ode.ODEOptions(solver="ddim", clip=True), ode.ODEOptions(solver="ddim")
    out = ode.decode(model, x, clipped, grid=grid)
    torch.testing.assert_close(out, decoded, rtol=1e-4, atol=1e-4)
    assert (out - ode.decode(model, x, plain, grid=grid)).abs().max() > 0.1  # the clip changed the decode
    torch.testing.assert_close(ode.encode(model, x, clipped, grid=grid), ode.encode(model, x, plain, grid=grid),
                               rtol=0, atol=0)  # fmt: skip


def test_ddim_grid_of_a_table_steps_on_its_integer_timesteps(tmp_path):
    from ddib.bridge.grids import sigma_grid

    model = load_external(save_pipeline(tmp_path / "m"), "diffusers")
    grid = sigma_grid(model, 10, uniform_t=True)
    n = model.schedule.t_of_sigma_bar(grid) * 999
    torch.testing.assert_close(n, torch.round(n), atol=1e-6, rtol=0)
    assert (
        len(grid) == 11 and float(grid[0]) == model.schedule.sigma_min and float(grid[-1]) == model.schedule.sigma_max
    )
    assert len(sigma_grid(model, 5000, uniform_t=True)) == 1000  # never more steps than the table has
    assert ode.describe_solve(ode.ODEOptions("ddim", steps=10), model) == "ddim × 10 steps"
    many = ode.describe_solve(ode.ODEOptions("ddim", steps=5000), model)
    assert many == "ddim × 5000 steps (the table's own timesteps: 999 steps taken)"  # what the summary reports


@pytest.mark.parametrize("schedule", ["linear", "squaredcos_cap_v2"])
def test_encode_decode_round_trip_to_solver_tolerance(tmp_path, schedule):
    model = load_external(save_pipeline(tmp_path / "m", schedule=schedule, prediction="v_prediction"), "diffusers")
    assert_round_trip_converges(model, _images(2, seed=2), (25, 100))


def test_learned_variance_keeps_the_first_channels_and_labels_select_classes(tmp_path):
    unet = tiny_unet(out_channels=6, num_class_embeds=4)
    model = load_external(save_pipeline(tmp_path / "m", unet), "diffusers")
    assert model.num_classes == 4 and model.data_shape == (3, SIZE, SIZE)
    x, n = _images(2), torch.tensor([5, 500])
    with torch.no_grad():
        out = unet(x, n, class_labels=torch.tensor([3, 3])).sample
    torch.testing.assert_close(model.with_label(3).eps(x, n.double() / 999), out[:, :3], rtol=1e-4, atol=1e-5)
    with pytest.raises(DDIBError, match="no unconditional mode"):
        model.eps(x, n.double() / 999)


@pytest.mark.parametrize("layout", ["pipeline", "pair", "flat"])
def test_every_diffusers_layout_loads_and_old_configs_read_as_epsilon(tmp_path, layout):
    folder = save_pipeline(tmp_path / "m", layout=layout, prediction=None)
    model = load_external(folder, "diffusers")
    assert model.config.prediction == "eps" and model.config.schedule == "linear"


def test_a_unet_saved_only_as_an_fp16_variant_loads_in_float32(tmp_path):
    unet = tiny_unet()
    folder = save_pipeline(tmp_path / "m", unet)
    for f in (folder / "unet").glob("diffusion_pytorch_model.*"):
        f.unlink()
    unet.half().save_pretrained(str(folder / "unet"), variant="fp16")  # diffusion_pytorch_model.fp16.safetensors
    model = load_external(folder, "diffusers")
    weight = next(model.net.parameters())
    assert weight.dtype == torch.float32
    x, n = _images(2, seed=5), torch.tensor([10.0, 500.0])
    with torch.no_grad():
        expected = unet.float()(x, n).sample
    torch.testing.assert_close(model.eps(x, n.double() / 999), expected, rtol=0, atol=1e-5)


def test_a_bridge_between_a_diffusers_model_and_a_ddib_model_meets_at_the_shared_noise_level(tmp_path):
    foreign = load_external(save_pipeline(tmp_path / "m", prediction="v_prediction"), "diffusers")
    torch.manual_seed(0)
    net = build_network(UNetConfig(image_size=SIZE, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                                   attention_resolutions=(), groups=4))  # fmt: skip
    own = Diffusion(net, DiffusionConfig(prediction="v")).eval()
    assert isinstance(foreign, Denoiser) and isinstance(own, Denoiser)  # one interface for both
    assert foreign.schedule.sigma_max > own.schedule.sigma_max == 80
    src, tgt = ode.bridge_ends(foreign, own)
    assert src.schedule.sigma_max == tgt.schedule.sigma_max == 80
    assert src.schedule.sigma_min == foreign.schedule.sigma_min  # each keeps its own data end
    x, opts = _images(2, seed=3), ode.ODEOptions(steps=12)
    y = ode.translate(foreign, own, x, opts)
    torch.testing.assert_close(y, ode.decode(own, ode.encode(src, x, opts), opts))
    back = ode.translate(own, foreign, y, ode.ODEOptions(steps=12))
    assert torch.isfinite(back).all() and back.shape == x.shape
    # the truncated encode stops at σ̄ = 80: its latent is the full encode's state there, not at the table's top
    full = ode.encode(foreign, x, opts)
    assert not torch.allclose(full, ode.encode(src, x, opts))


@pytest.mark.parametrize("name", ["imagenet-like", "improved-like"])
def test_guided_diffusion_checkpoint_matches_the_reference_network(tmp_path, name):
    pytest.importorskip("guided_diffusion")
    path, ref = save_guided(tmp_path, name)
    model = load_external(path, "guided-diffusion")
    flags = json.loads(path.with_suffix(".json").read_text())
    x, n = _images(3), torch.tensor([0.0, 311.0, 999.0])
    y = torch.tensor([7, 0, 999]) if flags["class_cond"] else None
    with torch.no_grad():
        expected = ref(x, n, y)[:, :3]
        ours = model.net(x, n, y)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    assert model.num_classes == (1000 if flags["class_cond"] else 0)
    # the state dict's keys are the reference's, one for one
    assert set(model.net.net.state_dict()) == set(ref.state_dict())


def test_a_guided_checkpoint_in_torch_s_legacy_format_loads_the_same_weights(tmp_path):
    """Zip-format files are memory-mapped; the pre-1.6 format, which cannot be, is read whole."""
    pytest.importorskip("guided_diffusion")
    path, ref = save_guided(tmp_path / "zip", "improved-like")
    legacy = tmp_path / "legacy" / path.name
    legacy.parent.mkdir()
    torch.save(ref.state_dict(), legacy, _use_new_zipfile_serialization=False)
    legacy.with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    a, b = (load_external(p, "guided-diffusion").net.net.state_dict() for p in (path, legacy))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) and b[k].device.type == "cpu" for k in a)


def test_guided_flags_choose_schedule_prediction_and_timestep_scale(tmp_path):
    pytest.importorskip("guided_diffusion")
    path, ref = save_guided(tmp_path, "improved-like", noise_schedule="cosine", predict_xstart=True,
                            rescale_timesteps=True, diffusion_steps=4000)  # fmt: skip
    model = load_external(path, "guided-diffusion")
    assert model.config.schedule == "squaredcos_cap_v2" and model.config.prediction == "sample"
    assert model.schedule.num_timesteps == 4000
    x, n = _images(1), torch.tensor([2000.0])
    with torch.no_grad():  # rescaled: the network is told n·1000/T
        expected = ref(x, n * 1000 / 4000)
    abar = 1 / (1 + model.schedule.sigma_bar(n.double() / 3999) ** 2)
    eps = (x - abar.sqrt().float() * expected) / (1 - abar).sqrt().float()
    torch.testing.assert_close(model.eps(x, n.double() / 3999), eps, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["imagenet-like", "improved-like"])
def test_classifier_guided_ddim_steps_are_guided_diffusions(tmp_path, name):
    """A checkpoint whose flags name a noisy classifier: the classifier is guided-diffusion's EncoderUNetModel key
    for key, and `--solver ddim --clip` decode steps are its `ddim_sample` with `cond_fn` (DDIM on the clipped x̂₀,
    then ε̃ = ε̂ − s·σ·∇ log p(y | x_t)) on the respaced timesteps, for a class-conditional network and for an
    unconditional one (whose label is the classifier's class); an encode is never guided."""
    pytest.importorskip("guided_diffusion")
    import torch.nn.functional as F
    from guided_diffusion.script_util import create_gaussian_diffusion

    scale = 30.0
    flags, classifier = save_classifier(tmp_path / "classifier.pt")
    path, net = save_guided(tmp_path, name, **flags, classifier_scale=scale)
    conditional = json.loads(path.with_suffix(".json").read_text())["class_cond"]
    ref = net if conditional else (lambda x_t, t, y=None: net(x_t, t))  # noqa: E731
    model = load_external(path, "guided-diffusion").with_label(7)
    x, n = _images(2, seed=6), torch.tensor([0.0, 500.0])
    with torch.no_grad():
        torch.testing.assert_close(model.classifier.net(x, n), classifier(x, n), rtol=1e-5, atol=1e-5)
    assert model.classifier.scale == scale
    assert set(model.classifier.net.state_dict()) == set(classifier.state_dict())

    def cond_fn(x_t, t, y=None):
        with torch.enable_grad():
            x_in = x_t.detach().requires_grad_(True)
            chosen = F.log_softmax(classifier(x_in, t), dim=-1)[range(len(x_t)), y]
            return torch.autograd.grad(chosen.sum(), x_in)[0] * scale

    diffusion = create_gaussian_diffusion(steps=1000, learn_sigma=conditional, noise_schedule="linear",
                                          timestep_respacing="ddim4")  # fmt: skip
    y = torch.tensor([7, 7])
    guided_opts, plain_opts = ode.ODEOptions(solver="ddim", clip=True), ode.ODEOptions(solver="ddim", clip=True,
                                                                                     classifier_scale=0)  # fmt: skip
    for k in (3, 2, 1):  # respaced index k steps from timestep map[k] to map[k - 1]
        x_t = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(k)) * 2
        step = torch.tensor([k, k])
        with torch.no_grad():
            expected = diffusion.ddim_sample(ref, x_t, step, clip_denoised=True, cond_fn=cond_fn,
                                             model_kwargs={"y": y})["sample"]  # fmt: skip
            unguided = diffusion.ddim_sample(ref, x_t, step, clip_denoised=True, model_kwargs={"y": y})["sample"]
        ends = torch.tensor([diffusion.timestep_map[k - 1], diffusion.timestep_map[k]]).double()
        grid = model.schedule.sigma_bar(ends / 999)
        torch.testing.assert_close(ode.decode(model, x_t, guided_opts, grid=grid), expected, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ode.decode(model, x_t, plain_opts, grid=grid), unguided, rtol=1e-4, atol=1e-4)
        assert (expected - unguided).abs().max() > 1e-3  # the guidance moved the step, ten times the tolerance
    grid = model.schedule.sigma_bar(torch.tensor([0.0, 250.0, 500.0, 750.0]).double() / 999)
    encoded = ode.encode(model, x, guided_opts, grid=grid)
    torch.testing.assert_close(encoded, ode.encode(model, x, plain_opts, grid=grid), rtol=0, atol=0)


def test_classifier_flags_errors(tmp_path):
    pytest.importorskip("guided_diffusion")
    flags, _ = save_classifier(tmp_path / "classifier.pt")
    path, _ = save_guided(tmp_path, "imagenet-like", **flags)
    base = json.loads(path.with_suffix(".json").read_text())
    with pytest.raises(DDIBError, match="does not match its classifier flags: missing"):
        load_external(path, "guided-diffusion", {**base, "classifier_depth": 2})
    with pytest.raises(DDIBError, match="checkpoint not found: .*nowhere.pt"):
        load_external(path, "guided-diffusion", {**base, "classifier_path": "nowhere.pt"})
    with pytest.raises(DDIBError, match="unknown classifier_pool 'max'"):
        load_external(path, "guided-diffusion", {**base, "classifier_pool": "max"})
    unconditional = load_external(save_guided(tmp_path / "u", "improved-like", **flags)[0], "guided-diffusion")
    assert unconditional.label_count == 1000 and unconditional.num_classes == 0
    z = _images(1)  # without a label to guide towards, the unconditional model decodes unguided
    torch.testing.assert_close(ode.decode(unconditional, z, ode.ODEOptions(steps=2)),
                               ode.decode(unconditional, z, ode.ODEOptions(steps=2, classifier_scale=0)))  # fmt: skip
    with pytest.raises(DDIBError, match="--classifier-scale needs the class to guide towards"):
        ode.decode(unconditional, z, ode.ODEOptions(steps=2, classifier_scale=1.0))
    with pytest.raises(DDIBError, match="label 1000 is not one of the classifier's 1000 classes"):
        unconditional.with_label(1000)
    plain = load_external(save_pipeline(tmp_path / "dif"), "diffusers")
    with pytest.raises(DDIBError, match="--classifier-scale needs a decoding model with a noisy classifier"):
        ode.decode(plain, _images(1), ode.ODEOptions(steps=2, classifier_scale=1.0))
    with pytest.raises(DDIBError, match="--classifier-scale must be a finite number ≥ 0"):
        ode.ODEOptions(classifier_scale=-1.0)


def test_guided_checkpoint_errors(tmp_path):
    pytest.importorskip("guided_diffusion")
    path, _ = save_guided(tmp_path, "improved-like")
    with pytest.raises(DDIBError, match=r"does not match its flags: missing .*unexpected"):
        load_external(path, "guided-diffusion", {**json.loads(path.with_suffix(".json").read_text()),
                                                  "num_res_blocks": 1, "resblock_updown": True})  # fmt: skip
    with pytest.raises(DDIBError, match="unknown guided-diffusion model flags: colour"):
        load_external(path, "guided-diffusion", {"colour": "red"})
    bare, _ = save_guided(tmp_path / "bare", "improved-like", flags_beside=False)
    with pytest.raises(DDIBError, match="needs its model flags"):
        load_external(bare, "guided-diffusion")
    flags = json.loads(path.with_suffix(".json").read_text())
    torch.save(torch.nn.Linear(2, 2), tmp_path / "whole.pt")  # a pickled module, which weights_only=True refuses
    with pytest.raises(DDIBError, match="holds pickled objects, not a plain state dict"):
        load_external(tmp_path / "whole.pt", "guided-diffusion", flags)
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:4096])
    with pytest.raises(DDIBError, match="cut.pt is not a readable state dict"):
        load_external(tmp_path / "cut.pt", "guided-diffusion", flags)


def test_diffusers_folder_errors(tmp_path):
    folder = save_pipeline(tmp_path / "vae")
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "vqvae": ["diffusers", "VQModel"]}))
    with pytest.raises(DDIBError, match="latent models are not supported yet"):
        load_external(folder, "diffusers")
    folder = save_pipeline(tmp_path / "nw")
    for f in (folder / "unet").glob("diffusion_pytorch_model.*"):
        f.unlink()
    with pytest.raises(DDIBError, match="has no weights"):
        load_external(folder, "diffusers")
    folder = save_pipeline(tmp_path / "wide")
    cfg = json.loads((folder / "unet" / "config.json").read_text())
    (folder / "unet" / "config.json").write_text(json.dumps({**cfg, "sample_size": [8, 16]}))
    with pytest.raises(DDIBError, match="a 8×16 UNet; ddib bridges square images only"):
        load_external(folder, "diffusers")
    folder = save_pipeline(tmp_path / "sched", _class_name="KarrasVeScheduler")
    with pytest.raises(DDIBError, match="scheduler KarrasVeScheduler is not supported"):
        load_external(folder, "diffusers")
    folder = save_pipeline(tmp_path / "block")
    cfg = json.loads((folder / "unet" / "config.json").read_text())
    cfg["down_block_types"] = ["DownBlock2D", "MysteryDownBlock2D"]
    (folder / "unet" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DDIBError, match="cannot build its UNet2DModel: .*MysteryDownBlock2D"):
        load_external(folder, "diffusers")


def test_a_part_of_a_model_names_the_model(tmp_path):
    pytest.importorskip("guided_diffusion")
    from ddib.model.registry import find_model

    folder = save_pipeline(tmp_path / "dif")
    for part in ("unet", "unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json"):
        with pytest.raises(DDIBError, match=f"{folder / part} is part of a model, not one: name {folder} instead"):
            find_model(str(folder / part))
    pt, _ = save_guided(tmp_path / "gd", "improved-like")
    with pytest.raises(DDIBError, match=f"name {pt} instead"):
        find_model(str(pt.with_suffix(".json")))
    with pytest.raises(DDIBError, match="is not a model directory: neither"):
        find_model(str(tmp_path))
    with pytest.raises(DDIBError, match="one option each: --domain a --domain b"):
        find_model(f"{folder},{pt}")


def test_the_committed_diffusers_eps_model_round_trips_to_solver_tolerance():
    """ε-prediction on DDPM's linear table: a trained model (a random ε-network is no score, and its flow is
    ill-conditioned), on samples of its own."""
    from pathlib import Path

    model = load_external(Path(__file__).parents[1] / "training" / "diffusers" / "sevens", "diffusers")
    assert model.config.prediction == "eps" and model.config.schedule == "linear"
    z = torch.randn((2, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    x = ode.decode(model, z, ode.ODEOptions(steps=50))
    errors = []
    for steps in (25, 100):
        opts = ode.ODEOptions(steps=steps)
        errors.append(float((ode.decode(model, ode.encode(model, x, opts), opts) - x).abs().max()))
    assert errors[1] < 0.05 and errors[1] < errors[0] / 2, errors
