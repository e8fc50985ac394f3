"""The DDIB bridge: probability-flow ODE encode/decode/translate, the solvers, batch sizing, tuned step grids,
and the bridge for 2-D point domains."""
