"""rlkit: Hydra-configured ablation sweeps for RL of reasoning LLMs."""
from omegaconf import OmegaConf


def scale_tokens(tokens: int | str, scale: float | str) -> int:
    """A full-scale token budget at a model's scale (`model.length_scale`), rounded half up, at least 1."""
    return max(1, int(int(tokens) * float(scale) + 0.5))


if not OmegaConf.has_resolver("rlkit_scale"):  # used by conf/length/*k.yaml
    OmegaConf.register_new_resolver("rlkit_scale", scale_tokens)
