"""validate_algo on malformed configs, and every shipped conf/algo/*.yaml: valid, schema, _target_ binds."""

from __future__ import annotations

import copy
import inspect
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rlkit.algos.validate import ALGO_KEYS, validate_algo

CONF = Path(__file__).resolve().parents[2] / "conf" / "algo"
SHIPPED = ("grpo", "dr_grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline", "ppo", "dapo", "gspo", "cispo", "sapo",
           "clip_cov", "kl_cov", "gmpo")

def composed(name: str) -> DictConfig:
    """conf/algo/<name>.yaml as Hydra composes it (its `defaults:` parent first), unresolved."""
    with initialize_config_dir(config_dir=str(CONF.parent), version_base="1.3"):
        return compose(overrides=[f"+algo={name}"]).algo


GOOD = {
    "name": "grpo",
    "advantage": {
        "_target_": "rlkit.algos.advantages.grpo",
        "_partial_": True,
        "eps": 1e-6,
        "norm_by_std": True,
    },
    "policy_loss": {"_target_": "rlkit.algos.losses.ppo_clip", "_partial_": True, "clip_low": 0.2, "clip_high": 0.2,
                    "dual_clip": None},
    "correction": {"_target_": "rlkit.algos.offpolicy.no_correction", "_partial_": True},
    "kl": {"placement": "loss", "estimator": "k3", "coef": 0.001},
    "aggregation": "token-mean",
    "agg_constant": None,
    "entropy_coef": 0.0,
    "epochs": 1,
    "mini_batches": 1,
    "group_filter": "none",
    "max_resample_rounds": 0,
    "critic": None,
}
GAE = {"_target_": "rlkit.algos.advantages.gae", "_partial_": True, "gamma": 1.0, "lam": 0.95}
CRITIC = {"lr": 1e-4, "value_clip": 0.2, "coef": 0.5}


def _with(**changes):
    cfg = copy.deepcopy(GOOD)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = cfg
        for p in parents:
            node = node[p]
        if value is KeyError:
            del node[leaf]
        else:
            node[leaf] = value
    return cfg


def test_good_config_passes():
    validate_algo(GOOD)
    validate_algo(_with(advantage=GAE, critic=CRITIC))
    validate_algo(_with(aggregation="seq-mean-token-sum-norm", agg_constant=256))
    validate_algo(_with(policy_loss__dual_clip=3.0, policy_loss__clip_high=0.28, kl__placement="none",
                        group_filter="resample"))


@pytest.mark.parametrize(
    "cfg,key,hint",
    [
        (
            _with(advantage__norm_by_std=KeyError, advantage___target_="rlkit.algos.advantages.ppo"),
            "algo.advantage._target_",
            "rlkit.algos.advantages.grpo",
        ),
        (_with(advantage__lam=0.9), "algo.advantage.lam", "eps, norm_by_std"),
        (_with(advantage___partial_=False), "algo.advantage._partial_", "true"),
        (_with(kl__placement="actor"), "algo.kl.placement", "reward, loss, none"),
        (_with(kl__estimator="k4"), "algo.kl.estimator", "k1, k2, k3"),
        (_with(kl__coef=-0.1), "algo.kl.coef", ">= 0"),
        (_with(kl__coef=KeyError), "algo.kl.coef", "missing"),
        (_with(aggregation="seq-sum"), "algo.aggregation", "seq-mean-token-sum-norm"),
        (_with(policy_loss__clip_low=0.0), "algo.policy_loss.clip_low", "(0, 1)"),
        (_with(policy_loss__clip_low=-0.2), "algo.policy_loss.clip_low", "(0, 1)"),
        (_with(policy_loss__clip_low=None), "algo.policy_loss.clip_low", "(0, 1)"),  # only cispo's may be null
        (_with(policy_loss__clip_high=0), "algo.policy_loss.clip_high", "positive"),
        (_with(policy_loss__clip_high=-0.28), "algo.policy_loss.clip_high", "positive"),
        (_with(policy_loss__clip_high=float("nan")), "algo.policy_loss.clip_high", "positive"),
        (_with(policy_loss__dual_clip=1.0), "algo.policy_loss.dual_clip", "> 1"),
        (_with(policy_loss__dual_clip=0.5), "algo.policy_loss.dual_clip", "> 1"),
        (_with(policy_loss={"_target_": "rlkit.algos.losses.sapo", "_partial_": True, "tau_neg": 0.0}),
         "algo.policy_loss.tau_neg", "positive"),
        (_with(policy_loss={"_target_": "rlkit.algos.losses.kl_cov", "_partial_": True, "kl_cov_ratio": 1.5}),
         "algo.policy_loss.kl_cov_ratio", "(0, 1]"),
        (_with(clip_high=0.28), "algo.clip_high", "write algo.policy_loss.clip_high=0.28"),  # moved key
        (_with(dual_clip=3.0), "algo.dual_clip", "algo.policy_loss.dual_clip"),
        (_with(critic=CRITIC), "algo.critic", "does not use a value model"),
        (_with(advantage=GAE), "algo.critic", "needs a value model"),
        (
            _with(advantage=GAE, critic={"lr": 0.0, "value_clip": 0.2, "coef": 0.5}),
            "algo.critic.lr",
            "positive",
        ),
        (_with(aggregation="seq-mean-token-sum-norm"), "algo.agg_constant", "required by"),
        (_with(aggregation="seq-mean-token-sum-norm", agg_constant=0), "algo.agg_constant", "positive"),
        (_with(epochs=0), "algo.epochs", ">= 1"),
        (_with(mini_batches=0), "algo.mini_batches", ">= 1"),
        (_with(epochs=1.5), "algo.epochs", "integer"),
        (_with(group_filter="drop"), "algo.group_filter", "none, mask, resample"),
        (_with(max_resample_rounds=-1), "algo.max_resample_rounds", ">= 0"),
        (_with(entropy_coef="0.01"), "algo.entropy_coef", "number"),
        (_with(entropy_cof=0.1), "algo.entropy_cof", "entropy_coef"),
        (_with(epochs=KeyError), "algo.epochs", "missing"),
    ],
)
def test_malformed_config_names_the_key(cfg, key, hint):
    with pytest.raises(ValueError) as err:
        validate_algo(cfg)
    msg = str(err.value)
    assert key in msg and hint in msg, msg


def test_message_contains_bad_value():
    with pytest.raises(ValueError, match="'actor'"):
        validate_algo(_with(kl__placement="actor"))


def test_shipped_files_exist():
    assert sorted(p.stem for p in CONF.glob("*.yaml")) == sorted(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_config_valid_and_target_binds(name):
    path = CONF / f"{name}.yaml"
    lines = path.read_text().splitlines()
    assert lines[0] == "# @package algo"
    assert sum(line.startswith("#") for line in lines[:6]) >= 4, "header comment: what, paper, deviations"
    cfg = composed(name)
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert set(plain) == set(ALGO_KEYS), "every key, from the file or its parent"
    assert tuple(plain) == tuple(composed("grpo")), "same order in every file (grpo's)"
    assert plain["name"] == name
    validate_algo(plain)

    fn = instantiate(cfg.advantage)
    B, T = 4, 3
    args = (torch.zeros(B, T), torch.ones(B, T), torch.tensor([0, 0, 1, 1]), torch.zeros(B, T))
    inspect.signature(fn).bind(*args)
    adv, ret = fn(*args)
    assert adv.shape == ret.shape == (B, T)
    assert not adv.any() and not ret.any()  # no reward and no value anywhere: nothing to reinforce


def test_shipped_algorithm_table():
    cfgs = {n: OmegaConf.to_container(composed(n)) for n in SHIPPED}
    grpo, dr, ppo, dapo = cfgs["grpo"], cfgs["dr_grpo"], cfgs["ppo"], cfgs["dapo"]
    assert grpo["kl"] == {"placement": "loss", "estimator": "k3", "coef": 0.001}
    assert grpo["advantage"]["norm_by_std"] is True and grpo["aggregation"] == "token-mean"
    assert dr["advantage"]["norm_by_std"] is False and dr["kl"]["placement"] == "none"
    assert dr["aggregation"] == "seq-mean-token-sum-norm" and dr["agg_constant"] == 256
    assert ppo["advantage"]["_target_"].endswith(".gae") and ppo["critic"] is not None
    assert (ppo["advantage"]["gamma"], ppo["advantage"]["lam"]) == (1.0, 0.95)
    assert dapo["policy_loss"]["clip_low"] == 0.2 and dapo["policy_loss"]["clip_high"] == 0.28
    assert dapo["kl"]["placement"] == "none" and grpo["policy_loss"]["clip_high"] == 0.2
    assert dapo["group_filter"] == "resample" and dapo["max_resample_rounds"] == 3
    for n in ("rloo", "reinforce_pp", "reinforce_pp_baseline", "ppo"):
        assert cfgs[n]["kl"]["placement"] == "reward" and cfgs[n]["kl"]["estimator"] == "k1", n
    assert cfgs["reinforce_pp_baseline"]["advantage"]["group_baseline"] is True
    assert cfgs["reinforce_pp"]["advantage"]["group_baseline"] is False
    assert all(c["critic"] is None for n, c in cfgs.items() if n != "ppo")


def test_compose_places_files_under_algo_package():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF.parent), version_base="1.3"):
        for name in SHIPPED:
            cfg = compose(overrides=[f"+algo={name}", "algo.mini_batches=4"])
            assert list(cfg) == ["algo"] and cfg.algo.name == name and cfg.algo.mini_batches == 4
            validate_algo(OmegaConf.to_container(cfg.algo, resolve=True))


def two_args(token_rewards, mask):  # not an estimator: the loop passes group and values too
    return token_rewards, token_rewards


def own(token_rewards, mask, group, values=None, *, scale=1.0):
    return token_rewards * scale, token_rewards


def test_estimators_are_accepted_by_signature_not_by_name():
    validate_algo(_with(advantage={"_target_": f"{__name__}.own", "_partial_": True, "scale": 0.5}))
    with pytest.raises(ValueError, match="algo.advantage.scal"):
        validate_algo(_with(advantage={"_target_": f"{__name__}.own", "_partial_": True, "scal": 0.5}))
    with pytest.raises(ValueError, match=r"algo.advantage._target_.*fn\(token_rewards, mask, group, values"):
        validate_algo(_with(advantage={"_target_": f"{__name__}.two_args", "_partial_": True}))
    with pytest.raises(ValueError, match="importable function"):
        validate_algo(_with(advantage={"_target_": f"{__name__}.missing", "_partial_": True}))
    with pytest.raises(ValueError, match="needs a value model"):  # gae.needs_values, not a name list
        validate_algo(_with(advantage=GAE))


def my_loss(logp, old_logp, advantages, mask, *, temperature=1.0):  # a user's own policy loss
    return -advantages * logp / temperature, {}


def my_correction(train_logp, rollout_logp, mask, *, cap=3.0):
    return (train_logp - rollout_logp).exp().clamp(max=cap), {}


def test_losses_and_corrections_are_accepted_by_signature_not_by_name():
    validate_algo(_with(policy_loss={"_target_": f"{__name__}.my_loss", "_partial_": True, "temperature": 2.0}))
    validate_algo(_with(correction={"_target_": f"{__name__}.my_correction", "_partial_": True, "cap": 5.0}))
    validate_algo(_with(correction={"_target_": "rlkit.algos.offpolicy.tis", "_partial_": True}))  # default cap
    with pytest.raises(ValueError, match="algo.policy_loss.temp"):
        validate_algo(_with(policy_loss={"_target_": f"{__name__}.my_loss", "_partial_": True, "temp": 2.0}))
    with pytest.raises(ValueError, match=r"algo.policy_loss._target_.*fn\(logp, old_logp, advantages, mask"):
        validate_algo(_with(policy_loss={"_target_": f"{__name__}.two_args", "_partial_": True}))
    with pytest.raises(ValueError, match=r"algo.correction._target_.*importable"):
        validate_algo(_with(correction={"_target_": "rlkit.algos.offpolicy.nope", "_partial_": True}))
    with pytest.raises(ValueError, match=r"algo.correction.cap=-1.*positive"):
        validate_algo(_with(correction={"_target_": "rlkit.algos.offpolicy.tis", "_partial_": True, "cap": -1}))
    with pytest.raises(ValueError, match="algo.policy_loss._partial_"):
        validate_algo(_with(policy_loss={"_target_": "rlkit.algos.losses.gspo"}))


@pytest.mark.parametrize("name", ["gspo", "cispo", "sapo", "clip_cov", "kl_cov", "gmpo"])
def test_new_loss_files_are_grpo_but_the_loss(name):
    """`algo=grpo,<loss>` isolates the loss: every key but the loss, its clip range and aggregation is grpo's."""
    grpo = OmegaConf.to_container(composed("grpo"), resolve=True)
    cfg = OmegaConf.to_container(composed(name), resolve=True)
    same = set(ALGO_KEYS) - {"name", "policy_loss", "aggregation"}
    assert {k: cfg[k] for k in same} == {k: grpo[k] for k in same}
    assert cfg["policy_loss"]["_target_"] == f"rlkit.algos.losses.{'gmpo' if name == 'gmpo' else name}"
