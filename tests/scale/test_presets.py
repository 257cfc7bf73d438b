"""Model-size presets: each composes, carries its resources (the one dial a model-size sweep turns),
feeds the SLURM launcher and the backend choice, and one whose checkpoint is not reachable fails
naming itself before any compute."""
from __future__ import annotations

import importlib.util

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rlkit.backends import resolve
from rlkit.config import CONF_DIR, ConfigError, check_model, check_scale, validate
from tests.conftest import run_rlkit

PRESETS = ["qwen2.5-0.5b-instruct", "qwen2.5-1.5b", "qwen2.5-3b", "qwen2.5-7b", "qwen2.5-14b", "r1-distill-qwen-14b"]
RESOURCES = {"gpus_per_node", "nodes", "cpus_per_task", "mem_gb", "zero_stage", "tensor_parallel", "micro_batch_size"}


def _compose(*overrides, hydra=False):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_with_its_resources(preset):
    cfg = _compose(f"model={preset}")
    m = cfg.model
    assert m.name == preset and m.path and m.context_length >= 4096
    assert set(m.resources) == RESOURCES
    r = m.resources
    assert r.gpus_per_node >= 1 and r.nodes >= 1 and r.zero_stage in (0, 1, 2, 3)
    assert r.tensor_parallel <= r.gpus_per_node and (r.gpus_per_node * r.nodes) % r.tensor_parallel == 0
    assert cfg.trainer.micro_batch_size == r.micro_batch_size  # one dial
    assert resolve(cfg) == ("deepspeed" if r.zero_stage > 0 else "torch")  # trainer.backend=auto
    assert m.lora.rank == 0 and m.lora.alpha == 64
    if resolve(cfg) == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(ConfigError, match=f"model={preset}: .*rlkit\\[deepspeed\\]"):
            check_scale(cfg)
    else:
        check_scale(cfg)  # backend / LoRA / engine choices are consistent


def test_presets_grow_with_the_model():
    sizes = [_compose(f"model={p}").model.resources for p in PRESETS[:5]]
    gpus = [r.gpus_per_node * r.nodes for r in sizes]
    assert gpus == sorted(gpus) and [r.zero_stage for r in sizes] == sorted(r.zero_stage for r in sizes)


@pytest.mark.parametrize("preset", ["tiny", "qwen2.5-7b", "qwen2.5-14b"])
def test_slurm_launcher_takes_the_preset_resources(preset):
    cfg = _compose(f"model={preset}", "launcher=slurm", hydra=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    r = cfg.model.resources
    assert (launcher["nodes"], launcher["gpus_per_node"], launcher["cpus_per_task"], launcher["mem_gb"]) == \
        (r.nodes, r.gpus_per_node, r.cpus_per_task, r.mem_gb)
    assert launcher["tasks_per_node"] == r.gpus_per_node  # one training process (rank) per GPU


@pytest.mark.parametrize("preset", PRESETS)
def test_unreachable_preset_fails_naming_it(preset, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_hf"))  # an empty Hugging Face cache
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    cfg = _compose(f"model={preset}")
    with pytest.raises(ConfigError, match=f"model={preset}: checkpoint '{cfg.model.path}'"):
        check_model(cfg)


def test_unreachable_preset_fails_before_compute_on_the_cli(tmp_path):
    r = run_rlkit(["model=qwen2.5-7b"], tmp_path, timeout=120,
                  env={"HF_HOME": str(tmp_path / "empty_hf"), "HF_HUB_CACHE": str(tmp_path / "empty_hf" / "hub")})
    assert r.returncode == 2
    assert "model=qwen2.5-7b" in r.stderr and "Qwen/Qwen2.5-7B" in r.stderr and "model.path" in r.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "ck").exists()


def test_preset_with_a_local_checkpoint_validates(tiny_path):
    validate(_compose("model=qwen2.5-0.5b-instruct", f"model.path={tiny_path}"))


@pytest.mark.parametrize(("overrides", "message"), [
    (["model=qwen2.5-7b", "curriculum.reset_ref=true"], "ZeRO-3"),
    (["model.lora.rank=8", "curriculum.reset_ref=true"], "LoRA"),
    (["trainer.offload_optimizer=true"], "trainer.backend=deepspeed"),
    (["model.resources.zero_stage=4"], "zero_stage=4"),
])
def test_scale_choices_that_do_not_fit_fail(overrides, message):
    with pytest.raises(ConfigError, match=message):
        check_scale(_compose(*overrides))
