"""The `rnnflow` command: reproduce the paper's claims, run named experiments at any scale,
run any sweep from a TOML file.

rnnflow reproduce [--out DIR] [--only NAME ...]   small versions of every experiment (minutes)
rnnflow run NAME [--config F.toml] [--seeds N] [--small] [--out DIR] [--lanes N]
rnnflow sweep CONFIG.toml [--out STORE] [--lanes N]
rnnflow list [--keys]                             the experiments and what each shows
rnnflow show DIR                                  the summary of a results folder

`reproduce`, `run` and `sweep` also take --float64, --device, --one-device and --quiet;
by default they make one JAX CPU device per core and spread the seeds over them. Every
user error is one line, `rnnflow: error: ...`, naming the path or option, with exit code 2.
"""

from .main import main as main
