import pytest

from trl_policysplit import PolicySplitConfig, PolicySplitTrainer


def _config(**overrides) -> PolicySplitConfig:
    defaults = {
        "output_dir": "unused",
        "per_device_train_batch_size": 4,
        "num_generations": 4,
        "report_to": "none",
        "use_cpu": True,
    }
    return PolicySplitConfig(**{**defaults, **overrides})


def test_defaults_are_the_documented_ones():
    config = _config()
    assert (config.alpha, config.eta_high, config.eta_normal, config.kappa) == (0.5, 0.0, 0.0, 1.0)
    assert config.share_rollouts and config.bonus_normalization == "zscore"
    assert config.entropy_estimator == "surprisal" and config.bonus_low_quantile == 0.0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"num_generations": 3, "per_device_train_batch_size": 3}, "num_generations"),
        ({"num_generations_eval": 3}, "num_generations_eval"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": -0.1}, "alpha"),
        ({"eta_high": -1.0}, "eta_high"),
        ({"eta_normal": -0.1}, "eta_normal"),
        ({"kappa": -1.0}, "kappa"),
        ({"bonus_normalization": "minmax"}, "bonus_normalization"),
        ({"entropy_estimator": "varentropy"}, "entropy_estimator"),
        ({"high_entropy_prompt": "   "}, "high_entropy_prompt"),
        ({"bonus_low_quantile": 1.0}, "bonus_low_quantile"),
        ({"bonus_uniform_reward_groups_only": True}, "kappa=0"),
    ],
)
def test_wrong_values_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        _config(**overrides)


def test_odd_num_generations_suggests_an_even_value():
    with pytest.raises(ValueError, match="num_generations=4"):
        _config(num_generations=3, per_device_train_batch_size=3)


def test_uniform_groups_only_is_accepted_without_clamp():
    assert _config(bonus_uniform_reward_groups_only=True, kappa=0.0).bonus_uniform_reward_groups_only


def test_trainer_rejects_rollout_func(tiny_model_dir):
    with pytest.raises(ValueError, match="rollout_func"):
        PolicySplitTrainer(
            model=tiny_model_dir,
            reward_funcs=lambda completions, **kw: [0.0] * len(completions),
            args=_config(),
            rollout_func=lambda prompts, trainer: {},
        )
