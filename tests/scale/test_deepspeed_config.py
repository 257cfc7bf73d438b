"""The DeepSpeed config rlkit builds: ZeRO buffer sizes from the model (DeepSpeed's GPU-sized defaults put a 2 GB
gradient bucket on every rank and keep a sub-1B model gathered whole; docs/scale.md), validated before compute."""
from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from rlkit.config import CONF_DIR, ConfigError, check_scale

pytest.importorskip("deepspeed", reason="pip install 'rlkit[deepspeed]'")
from deepspeed.runtime.zero.config import DeepSpeedZeroConfig  # noqa: E402

from rlkit.backends.deepspeed_backend import ds_config, model_sizes  # noqa: E402
from rlkit.models.shapes import meta_model, preset  # noqa: E402

ZERO3 = ["model=qwen2.5-0.5b-instruct", "trainer.backend=deepspeed", "model.resources.zero_stage=3",
         "trainer.offload_optimizer=true"]


def _compose(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def _qwen05_layer_params() -> int:
    h, kv, ff = 896, 2 * 64, 4864  # hidden, key/value width (2 kv heads x 64), MLP width of Qwen2.5-0.5B
    return (h * h + h) + 2 * (h * kv + kv) + h * h + 3 * h * ff + 2 * h  # q, k, v (biased), o, gate/up/down, 2 norms


def test_auto_sizes_follow_the_05b_shape():
    model = meta_model(preset("qwen2.5-0.5b-instruct"))
    assert model_sizes(model) == (896, _qwen05_layer_params())
    zero = ds_config(_compose(*ZERO3), 2, model)["zero_optimization"]
    assert zero["reduce_bucket_size"] == 896 * 896 == 802_816  # DeepSpeed's default: 5e8 (2 GB of fp32 per rank)
    assert zero["stage3_prefetch_bucket_size"] == int(0.9 * 896 * 896)
    assert zero["stage3_param_persistence_threshold"] == 8960
    assert zero["stage3_max_live_parameters"] == zero["stage3_max_reuse_distance"] == 2 * 14_912_384
    assert zero["sub_group_size"] == 10**8
    assert zero["offload_optimizer"] == {"device": "cpu"}
    parsed = DeepSpeedZeroConfig(**zero)  # DeepSpeed's own schema (unknown keys fail): the keys are the ones it reads
    assert (parsed.reduce_bucket_size, parsed.max_live_parameters, parsed.prefetch_bucket_size) == (802_816,
                                                                                                  29_824_768, 722_534)


def test_integer_settings_are_used_as_given():
    model = meta_model(preset("qwen2.5-0.5b-instruct"))
    cfg = _compose(*ZERO3, "trainer.deepspeed.reduce_bucket_size=500000000", "trainer.deepspeed.sub_group_size=1000")
    zero = ds_config(cfg, 2, model)["zero_optimization"]
    assert zero["reduce_bucket_size"] == 500_000_000 and zero["sub_group_size"] == 1000
    assert zero["stage3_prefetch_bucket_size"] == int(0.9 * 896 * 896)  # the others stay auto


@pytest.mark.parametrize("bad", ["0", "-5", "big", "1.5"])
def test_bad_setting_fails_before_compute(bad):
    with pytest.raises(ConfigError, match=r"trainer\.deepspeed\.reduce_bucket_size"):
        check_scale(_compose(*ZERO3, f"trainer.deepspeed.reduce_bucket_size={bad}"))
