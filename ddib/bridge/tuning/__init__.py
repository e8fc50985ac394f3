"""Fixed-step solves tuned to one model (`ddib tune-solver`): where a solve puts its σ̄ nodes, and the per-step
corrections of a solver that takes them, fitted against a converged solve on the model's own data and kept only
where they lower the error on held-out data. The result is a `tuned.TunedSolve`, kept in the model's config.json.

- `search`: node-by-node coordinate search per direction (then least-squares corrections on the kept grid);
- `coefficients`: the least-squares fits of the corrections, node by node and end to end;
- `gradient`: nodes and corrections together by gradient through the solver (`learned_solver`), per direction or
  for a bridge's two ends jointly;
- `solves`: the tuning data, batched solves through given nodes, and the converged solves errors are measured to.

Which methods apply to a solver is in its spec (`solvers.SolverSpec.tuning`).
"""

from ...evaluation.metrics import LEVELS, rms
from ..tuned import DIRECTIONS, TunedSolve, merge_entry
from .coefficients import fit_corrections, refine_corrections
from .gradient import fit_solver, tune_bridge
from .search import coordinate_search, grid_from_positions, positions_of, tune_direction, tune_solver
from .solves import TuningData, decode_on, encode_on, tuning_data

__all__ = ["DIRECTIONS", "LEVELS", "TunedSolve", "TuningData", "coordinate_search", "decode_on", "encode_on",
           "fit_corrections", "fit_solver", "grid_from_positions", "merge_entry", "positions_of",
           "refine_corrections", "rms", "tune_bridge", "tune_direction", "tune_solver", "tuning_data"]  # fmt: skip
