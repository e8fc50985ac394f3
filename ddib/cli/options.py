"""Options shared by several commands, so each is spelled and documented once."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Optional

import typer

from ..bridge import ode
from ..io.images import ImageBatch
from ..model.speed import SpeedOptions, check_speed, default_speed
from .app import console

DeviceOpt = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps")
ModelsDirOpt = typer.Option(None, "--models-dir", help="Trained models folder [default: $DDIB_MODELS_DIR or models/]")
DataDirOpt = typer.Option(None, "--data-dir", help="Dataset folder [default: $DDIB_DATA_DIR or data/]")
SeedOpt = typer.Option(0, "--seed", help="Random seed")
SolverOpt = typer.Option(ode.DEFAULT_SOLVER, "--solver", help=f"ODE solver: {', '.join(ode.SOLVERS)}")
StepsOpt = typer.Option(
    None,
    "--steps",
    min=1,
    help=f"Steps per ODE solve for fixed-step solvers [default: the models' own (ddib tune-solver), else "
    f"{ode.DEFAULT_STEPS}]",
)
QualityOpt = typer.Option(
    "default",
    "--quality",
    help="fast | default | exact: the solve the models store under that name (`ddib bench quality "
    "--save-presets`): fast the fewest steps whose translations score as the converged ones, exact within 0.1 "
    "level of the converged translation (cycles, likelihoods, latent studies); --steps and --rho override it",
)
ClipOpt = typer.Option(
    False,
    "--clip",
    help="Clip the denoised estimate x̂₀ to [-1, 1] while decoding, as guided-diffusion's clip_denoised (the "
    "official DDIB decodes so) and diffusers' clip_sample do; encoding never clips (it would no longer be "
    "invertible)",
)
ClassifierScaleOpt = typer.Option(
    None,
    "--classifier-scale",
    help="Weight of the decoding model's noisy classifier (guided-diffusion's classifier_scale; 0: unguided) "
    "[default: the scale its flags give, 1 if they give none; encoding is never guided]",
)
RtolOpt = typer.Option(ode.DEFAULT_RTOL, "--rtol", help="Relative tolerance (adaptive solvers)")
AtolOpt = typer.Option(ode.DEFAULT_ATOL, "--atol", help="Absolute tolerance (adaptive solvers)")
RhoOpt = typer.Option(
    None,
    "--rho",
    help="Step grid of fixed-step solvers: EDM's ρ, inf = uniform in log-SNR [default: the model's tuned grid "
    "(`ddib tune-solver`) if it has one, else inf for dpm2m and unipc, 7 for the others]",
    min=0.01,
)
ChannelsLastOpt = typer.Option(
    None, "--channels-last/--no-channels-last", help="NHWC convolutions [default: the measured best per device]"
)
CompileOpt = typer.Option(False, "--compile", help="torch.compile the network (pays off on large runs)")
CudaGraphsOpt = typer.Option(
    False, "--cuda-graphs", help="Replay each network evaluation as a recorded CUDA graph (CUDA; torch.compile "
    "reduce-overhead: pays off at small batches, after a first call that records)"
)  # fmt: skip
Bf16Opt = typer.Option(False, "--bf16", help="bfloat16 autocast of the network while decoding (encoding stays fp32)")
Fp16Opt = typer.Option(False, "--fp16", help="float16 autocast of the network while decoding (encoding stays fp32)")
SymmetryOpt = typer.Option(
    "auto",
    "--symmetry",
    help="Average ε̂ over colour symmetries: auto (the model's config), none, rgb-cyclic (3 network passes per "
    "evaluation), rgb-all (6), rgb-flip (2: the hue reflection, also for hue-quotient models) for RGB models; "
    "chroma-flip (2) for HSV-cone models",
)
GuidanceOpt = typer.Option(
    0.0,
    "--guidance",
    help="Classifier-free guidance scale w when a label of a conditional model decodes (0: its plain conditional "
    "ODE; w ≠ 0 sharpens the class but no longer solves that domain's probability-flow ODE)",
)
SkipBadOpt = typer.Option(
    False,
    "--skip-bad",
    help="Go on without unreadable input images (counted at the end) instead of stopping before any work",
)

ResizeOpt = typer.Option(
    "crop",
    "--resize",
    help="Images of another size than the model's: crop (shorter side to the model's size, centre crop) or stretch "
    "(both sides to it)",
)

__all__ = ["Optional"]


def report_skipped(images: ImageBatch) -> None:
    """The closing line of a --skip-bad run that met unreadable files."""
    if images.skipped:
        names = ", ".join(str(p) for p, _ in images.skipped[:3]) + (", …" if len(images.skipped) > 3 else "")
        console.print(f"skipped {len(images.skipped)} unreadable image(s) ({names})")


@dataclass(frozen=True)
class Kernels:
    """The kernel options a user gave (None / False: the device's measured default)."""

    channels_last: bool | None = None
    compile: bool = False
    cuda_graphs: bool = False
    bf16: bool = False
    fp16: bool = False

    def resolve(self, device) -> SpeedOptions:
        """The user's kernel settings over the device's measured defaults."""
        base = default_speed(device)
        channels_last = base.channels_last if self.channels_last is None else self.channels_last
        speed = SpeedOptions(channels_last, self.compile or base.compile, self.cuda_graphs or base.cuda_graphs,
                             self.bf16 or base.bf16, self.fp16 or base.fp16)  # fmt: skip
        check_speed(speed, device)
        return speed


def kernel_options(command):
    """Give a command the kernel options (--channels-last, --compile, --cuda-graphs, --bf16, --fp16), handed to it
    as one `kernels: Kernels` argument."""
    return _grouped(command, "kernels", Kernels, [
        ("channels_last", Optional[bool], ChannelsLastOpt), ("compile", bool, CompileOpt),
        ("cuda_graphs", bool, CudaGraphsOpt), ("bf16", bool, Bf16Opt), ("fp16", bool, Fp16Opt)])  # fmt: skip


def shards(command):
    """Mark a command that splits its work across torchrun's processes (every other one refuses to run under
    several)."""
    command.shards_across_processes = True
    return command


def solve_options(command):
    """Give a command the eight options of an ODE solve (--solver, --steps, --quality, --rtol, --atol, --rho,
    --clip, --classifier-scale), handed to it as one `opts: ODEOptions` argument."""
    return _grouped(command, "opts", ode_options, [
        ("solver", str, SolverOpt), ("steps", Optional[int], StepsOpt), ("quality", str, QualityOpt),
        ("rtol", float, RtolOpt), ("atol", float, AtolOpt), ("rho", Optional[float], RhoOpt),
        ("clip", bool, ClipOpt), ("classifier_scale", Optional[float], ClassifierScaleOpt)])  # fmt: skip


def _grouped(command, name: str, build, added: list[tuple]):
    """`command` with the options `added` (name, type, typer option) in place of its parameter `name`, which gets
    `build(**their values)`: typer sees each option, the command one object."""
    signature = inspect.signature(command)
    kept = [p for n, p in signature.parameters.items() if n != name]
    params = kept + [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=d, annotation=t)
                     for n, t, d in added]  # fmt: skip
    names = [n for n, _, _ in added]

    @functools.wraps(command)
    def run(*args, **kwargs):
        given = {n: kwargs.pop(n) for n in names}
        return command(*args, **{name: build(**given)}, **kwargs)

    run.__signature__ = signature.replace(parameters=params)
    run.__annotations__ = {k: v for k, v in command.__annotations__.items() if k != name}
    run.__annotations__.update({n: t for n, t, _ in added})
    return run


def ode_options(solver: str, steps: int | None, rtol: float, atol: float, rho: float | None = None,
                quality: str = "default", clip: bool = False,
                classifier_scale: float | None = None) -> ode.ODEOptions:  # fmt: skip
    """The solve the user asked for; a model's tuned grid is used unless --rho names a grid shape."""
    return ode.ODEOptions(solver=solver, steps=steps, rtol=rtol, atol=atol, rho=rho, tuned=rho is None,
                          quality=quality, clip=clip, classifier_scale=classifier_scale)  # fmt: skip
