"""Tiny foreign models the tests build and save themselves: diffusers `UNet2DModel` folders and guided-diffusion
state dicts (random weights, a few KB)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

SIZE = 8


def tiny_unet(out_channels: int = 3, num_class_embeds: int | None = None, seed: int = 0):
    """A 2-level UNet2DModel for 8×8 RGB, its weights jittered so that no layer is the zero it starts as."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=SIZE, in_channels=3, out_channels=out_channels, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, attention_head_dim=8, num_class_embeds=num_class_embeds,
    )  # fmt: skip
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return unet.eval()


def tiny_score_unet(skip: bool = True, seed: int = 0):
    """A Fourier-embedded UNet2DModel for 8×8 RGB, a score-SDE network: NCSN++'s skip blocks when `skip` (the input
    reaches the output unnormalised, so a random one diverges in a solve), else plain blocks."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    if skip:  # as google/ncsnpp-*: group counts from the widths, attention heads of full width
        blocks = dict(down_block_types=("SkipDownBlock2D", "AttnSkipDownBlock2D"), block_out_channels=(32, 32),
                      up_block_types=("AttnSkipUpBlock2D", "SkipUpBlock2D"), norm_num_groups=None,
                      attention_head_dim=None)  # fmt: skip
    else:
        blocks = dict(down_block_types=("DownBlock2D", "AttnDownBlock2D"), block_out_channels=(8, 16),
                      up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4,
                      attention_head_dim=8)  # fmt: skip
    unet = UNet2DModel(sample_size=SIZE, in_channels=3, out_channels=3, layers_per_block=1, norm_eps=1e-6,
                       time_embedding_type="fourier", flip_sin_to_cos=True, freq_shift=1, **blocks)  # fmt: skip
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))

    return unet.eval()


VE_SCHEDULER = {"_class_name": "ScoreSdeVeScheduler", "num_train_timesteps": 2000, "sigma_min": 0.01,
                "sigma_max": 348.0, "snr": 0.15}  # fmt: skip


def save_score_sde(folder: Path, unet=None, **scheduler) -> Path:
    """A score-SDE VE pipeline folder (model_index.json, unet/, scheduler/), as google/ncsnpp-* are laid out."""
    save_pipeline(folder, unet if unet is not None else tiny_score_unet(), scheduler={**VE_SCHEDULER, **scheduler})
    index = {"_class_name": "ScoreSdeVePipeline", "unet": ["diffusers", "UNet2DModel"],
             "scheduler": ["diffusers", "ScoreSdeVeScheduler"]}  # fmt: skip
    (Path(folder) / "model_index.json").write_text(json.dumps(index))
    return Path(folder)


def scheduler_config(schedule: str = "linear", prediction: str | None = "epsilon", **extra) -> dict:
    cfg = {"_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02,
           "beta_schedule": schedule, "clip_sample": True, "variance_type": "fixed_small", **extra}  # fmt: skip
    if prediction is not None:
        cfg["prediction_type"] = prediction
    return cfg


def save_pipeline(folder: Path, unet=None, layout: str = "pipeline", scheduler: dict | None = None, **options) -> Path:
    """A diffusers folder: 'pipeline' (model_index.json, unet/, scheduler/), 'pair' (unet/ + scheduler/) or 'flat'
    (config.json, weights and scheduler_config.json side by side); the scheduler config is `scheduler`, else a
    DDPMScheduler's with `options` (`scheduler_config`)."""
    unet = unet if unet is not None else tiny_unet()
    folder = Path(folder)
    unet_dir = folder / "unet" if layout in ("pipeline", "pair") else folder
    unet.save_pretrained(str(unet_dir))
    sched_file = (
        folder / "scheduler" / "scheduler_config.json" if layout != "flat" else folder / "scheduler_config.json"
    )
    sched_file.parent.mkdir(parents=True, exist_ok=True)
    sched_file.write_text(json.dumps(scheduler if scheduler is not None else scheduler_config(**options)))
    if layout == "pipeline":
        index = {"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"],
                 "scheduler": ["diffusers", "DDPMScheduler"]}  # fmt: skip
        (folder / "model_index.json").write_text(json.dumps(index))
    return folder


GUIDED_FLAGS = {
    # class-conditional, learned variances, FiLM norm, resblock up/down, new attention order, heads by channels
    "imagenet-like": dict(image_size=SIZE, num_channels=32, num_res_blocks=1, channel_mult="1,2", learn_sigma=True,
                          class_cond=True, attention_resolutions="4", num_heads=2, num_head_channels=16,
                          use_scale_shift_norm=True, resblock_updown=True, use_new_attention_order=True),
    # improved-diffusion's network: legacy attention order, additive embedding, conv resampling
    "improved-like": dict(image_size=SIZE, num_channels=32, num_res_blocks=2, channel_mult="1,2", learn_sigma=False,
                          class_cond=False, attention_resolutions="8,4", num_heads=4, use_scale_shift_norm=False,
                          resblock_updown=False, use_new_attention_order=False),
}  # fmt: skip


def _guided_diffusion():
    """guided-diffusion's modules, imported without their deprecation warnings."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from guided_diffusion import script_util, unet
    return script_util, unet


def _randomised(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every weight drawn at random, its zero-initialised layers too, in eval mode."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1)
    return net.eval()


def guided_reference(name: str, seed: int = 0):
    """guided-diffusion's own UNetModel for a flag set, every weight random."""
    flags = dict(GUIDED_FLAGS[name])
    net = _guided_diffusion()[0].create_model(**flags, dropout=0.0, use_checkpoint=False, use_fp16=False,
                                              num_heads_upsample=-1)  # fmt: skip
    return _randomised(net, seed), flags


def save_guided(folder: Path, name: str, flags_beside: bool = True, **extra_flags) -> tuple[Path, object]:
    """(checkpoint path, reference network): the state dict as .pt and, by default, its flags as JSON beside it."""
    net, flags = guided_reference(name)
    path = Path(folder) / f"{name}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    if flags_beside:
        path.with_suffix(".json").write_text(json.dumps({**flags, **extra_flags}))
    return path, net


# guided-diffusion's noisy classifier at SIZE: its flags as the model's JSON names them, and the network they build
CLASSIFIER_FLAGS = dict(classifier_width=32, classifier_depth=1, classifier_attention_resolutions="4",
                        classifier_channel_mult="1,2", classifier_use_scale_shift_norm=True,
                        classifier_resblock_updown=True, classifier_pool="attention")  # fmt: skip


def save_classifier(path: Path, seed: int = 1):
    """(the classifier's flags with its path, reference network): guided-diffusion's EncoderUNetModel as
    `create_classifier` builds it (64 channels a head, 1000 classes), every weight random, saved at `path`."""
    net = _guided_diffusion()[1].EncoderUNetModel(
        image_size=SIZE, in_channels=3, model_channels=32, out_channels=1000, num_res_blocks=1,
        attention_resolutions=(2,), channel_mult=(1, 2), num_head_channels=64, use_scale_shift_norm=True,
        resblock_updown=True, pool="attention",
    )  # fmt: skip
    net = _randomised(net, seed)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return {**CLASSIFIER_FLAGS, "classifier_path": str(path)}, net


def assert_round_trip_converges(model, x: torch.Tensor, steps: tuple[int, int]) -> None:
    """decode(encode(x)) returns x to 5e-3 at the larger step count, at least 4× closer than at the smaller."""
    from ddib.bridge import ode

    errors = []
    for n in steps:
        opts = ode.ODEOptions(steps=n)
        errors.append(float((ode.decode(model, ode.encode(model, x, opts), opts) - x).abs().max()))
    assert errors[1] < 5e-3 and errors[1] < errors[0] / 4, errors  # converges with the step count
