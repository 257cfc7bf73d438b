"""SLURM/submitit glue: launchers, the sweep callback, detached submit, status, the Optuna sweeper.

Hydra instantiates launcher and sweeper plugins only from the `hydra_plugins` namespace package, so
rlkit's plugin classes live in `rlkit/launch/plugins/hydra_plugins/rlkit_plugins.py` (thin subclasses
of the code in this package); importing `rlkit.launch` puts that directory on `sys.path` so Hydra's
plugin scan finds them (`rlkit/run.py` imports this package before Hydra starts).
"""
from __future__ import annotations

import sys
from pathlib import Path

PLUGINS_DIR = str(Path(__file__).resolve().parent / "plugins")
if PLUGINS_DIR not in sys.path:
    sys.path.append(PLUGINS_DIR)
