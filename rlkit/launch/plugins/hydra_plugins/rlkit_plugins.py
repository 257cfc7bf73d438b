"""rlkit's Hydra plugins. Hydra instantiates a launcher or sweeper only from a class defined in the
`hydra_plugins` namespace package, so these are thin subclasses; the code is in rlkit/launch/.

Selected by `_target_` in conf/launcher/{local_parallel,slurm}.yaml and conf/hydra/sweeper/rlkit_optuna.yaml.
This directory is put on sys.path by `import rlkit.launch` (rlkit/run.py does it before Hydra starts).
The launchers pickle this module by value (rlkit.launch.launchers), so a job process (SLURM node,
local subprocess) unpickles them without this directory on its path.
"""
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher

from rlkit.launch.launchers import LocalParallelMixin, SlurmMixin
from rlkit.launch.optuna_sweeper import OptunaSweeperImpl


class RlkitLocalLauncher(LocalParallelMixin, LocalLauncher):
    """launcher=local_parallel: several jobs at once on this machine, threads split between them."""


class RlkitSlurmLauncher(SlurmMixin, SlurmLauncher):
    """launcher=slurm: job arrays per resource shape, job ids recorded, cancelled jobs reported as failed."""


class RlkitOptunaSweeper(OptunaSweeperImpl):
    """hydra/sweeper=rlkit_optuna: Optuna (>= 4) ask/tell over a persistent study, trials via the launcher."""


