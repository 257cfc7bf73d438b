"""SLURM/submitit glue: launchers, the sweep callback, detached submit, status, the Optuna sweeper.

Hydra instantiates launcher and sweeper plugins only from the `hydra_plugins` namespace package, so
rlkit's plugin classes live in `rlkit/launch/plugins/hydra_plugins/rlkit_plugins.py` (thin subclasses
of the code in this package); importing `rlkit.launch` puts that directory on `sys.path` so Hydra's
plugin scan finds them (`rlkit/run.py` imports this package before Hydra starts). It also registers
`hydra/launcher=rlkit_local` (submitit_local's keys plus `devices`) for conf/launcher/local_parallel.yaml.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore

PLUGINS_DIR = str(Path(__file__).resolve().parent / "plugins")
if PLUGINS_DIR not in sys.path:
    sys.path.append(PLUGINS_DIR)

from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf  # noqa: E402  (found via the path above)


@dataclass
class RlkitLocalQueueConf(LocalQueueConf):
    """hydra/launcher=rlkit_local: the device ids local_parallel hands out to jobs (`devices`: null = every GPU
    torch sees, an int N = ids 0..N-1, a list = those ids)."""

    _target_: str = "hydra_plugins.rlkit_plugins.RlkitLocalLauncher"
    devices: Any = None


ConfigStore.instance().store(group="hydra/launcher", name="rlkit_local", node=RlkitLocalQueueConf, provider="rlkit")
