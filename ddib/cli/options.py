"""Options shared by several commands, so each is spelled and documented once."""

from __future__ import annotations

from typing import Optional

import typer

from .. import ode

DeviceOpt = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps")
ModelsDirOpt = typer.Option(
    None, "--models-dir", help="Trained models folder [default: $DDIB_MODELS_DIR or models/]"
)
DataDirOpt = typer.Option(None, "--data-dir", help="Dataset folder [default: $DDIB_DATA_DIR or data/]")
SeedOpt = typer.Option(0, "--seed", help="Random seed")
SolverOpt = typer.Option(ode.DEFAULT_SOLVER, "--solver", help=f"ODE solver: {', '.join(ode.SOLVERS)}")
StepsOpt = typer.Option(ode.DEFAULT_STEPS, "--steps", help="Steps per ODE solve for fixed-step solvers")
RtolOpt = typer.Option(ode.DEFAULT_RTOL, "--rtol", help="Relative tolerance (adaptive solvers)")
AtolOpt = typer.Option(ode.DEFAULT_ATOL, "--atol", help="Absolute tolerance (adaptive solvers)")
BatchOpt = typer.Option(None, "--batch-size", help="Images per batch [default: 64]")

__all__ = ["Optional"]


def ode_options(solver: str, steps: int, rtol: float, atol: float) -> ode.ODEOptions:
    return ode.ODEOptions(solver=solver, steps=steps, rtol=rtol, atol=atol)
