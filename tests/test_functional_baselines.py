"""Entropy-guided baselines (ALGORITHMS.md §4): per-token covariance, Clip-Cov and KL-Cov token selection
(arXiv 2505.22617), the entropy advantage (arXiv 2506.14758), and validation of their config fields. Expected
values are computed by hand in the tests."""

from __future__ import annotations

import statistics

import pytest
import torch
from tiny import trainer_settings

from trl_policysplit import AsymGRPOConfig, PolicySplitConfig
from trl_policysplit.functional import clip_cov_mask, entropy_advantage_bonus, kl_cov_mask, token_covariance

PAD = 1e3  # garbage at padded positions: large enough to dominate any mean or ranking it leaked into


def _positions(selected: torch.Tensor) -> set[tuple[int, int]]:
    return {(int(r), int(c)) for r, c in selected.nonzero().tolist()}


def _banded(rows: int, band_cols: int, high_cols: int, pad_cols: int):
    """Rows alternate advantage +1 / -1 (token mean 0). Per row: ``band_cols`` tokens of covariance exactly 1,
    then ``high_cols`` of covariance exactly 10, then ``pad_cols`` padded tokens holding garbage.

    With token mean M = -12 of logp: a +1 row has logp M + 1 (band) and M + 10 (high), a -1 row M - 1 and
    M - 10, so the mean is M and the covariances (+-1)(+-1) = 1 and (+-10)(+-1) = 10 are exact in float32.
    """
    assert rows % 2 == 0
    mean = -12.0
    logps, advantages, mask = [], [], []
    for row in range(rows):
        sign = 1.0 if row % 2 == 0 else -1.0
        logps.append([mean + sign] * band_cols + [mean + 10 * sign] * high_cols + [PAD] * pad_cols)
        advantages.append([sign] * (band_cols + high_cols) + [PAD] * pad_cols)
        mask.append([1] * (band_cols + high_cols) + [0] * pad_cols)
    return torch.tensor(logps), torch.tensor(advantages), torch.tensor(mask)


def _band_positions(rows: int, band_cols: int) -> set[tuple[int, int]]:
    return {(r, c) for r in range(rows) for c in range(band_cols)}


# ----------------------------------------------------------------------------------------------------------------
# token_covariance


def test_token_covariance_centres_on_the_means_of_the_valid_tokens_only():
    logps = torch.tensor([[-1.0, -2.0, PAD], [-3.0, -6.0, -PAD]])
    advantages = torch.tensor([[2.0, 2.0, PAD], [-1.0, -1.0, PAD]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    mean_logp = (-1 - 2 - 3 - 6) / 4  # -3
    mean_adv = (2 + 2 - 1 - 1) / 4  # 0.5
    expected = torch.tensor(
        [
            [(-1 - mean_logp) * (2 - mean_adv), (-2 - mean_logp) * (2 - mean_adv), 0.0],
            [(-3 - mean_logp) * (-1 - mean_adv), (-6 - mean_logp) * (-1 - mean_adv), 0.0],
        ]
    )
    torch.testing.assert_close(token_covariance(logps, advantages, mask), expected)
    torch.testing.assert_close(expected, torch.tensor([[3.0, 1.5, 0.0], [0.0, 4.5, 0.0]]))  # the arithmetic above


def test_token_covariance_weighs_the_advantage_mean_by_token_not_by_row():
    # Row 0 has 3 valid tokens of advantage 1, row 1 one of -3: the token mean is (3 - 3) / 4 = 0 (by row: -1).
    logps = torch.tensor([[-1.0, -2.0, -3.0], [-6.0, PAD, PAD]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    mean_logp = (-1 - 2 - 3 - 6) / 4  # -3
    expected = torch.tensor(
        [
            [(-1 - mean_logp) * 1, (-2 - mean_logp) * 1, (-3 - mean_logp) * 1],
            [(-6 - mean_logp) * -3, 0.0, 0.0],
        ]
    )
    torch.testing.assert_close(token_covariance(logps, torch.tensor([1.0, -3.0]), mask), expected)


def test_token_covariance_with_per_token_advantages():
    logps = torch.tensor([[-1.0, -3.0], [-2.0, PAD]])
    advantages = torch.tensor([[3.0, 0.0], [0.0, PAD]])
    mask = torch.tensor([[True, True], [True, False]])
    mean_logp, mean_adv = (-1 - 3 - 2) / 3, (3 + 0 + 0) / 3  # -2, 1
    expected = torch.tensor(
        [
            [(-1 - mean_logp) * (3 - mean_adv), (-3 - mean_logp) * (0 - mean_adv)],
            [(-2 - mean_logp) * (0 - mean_adv), 0.0],
        ]
    )
    torch.testing.assert_close(token_covariance(logps, advantages, mask), expected)


def test_token_covariance_accepts_advantages_per_row_column_or_token_alike():
    logps = torch.tensor([[-0.5, -1.5, -4.0, PAD], [-2.0, -0.25, PAD, PAD], [-3.0, -1.0, -1.0, -0.5]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    per_row = torch.tensor([0.8, -1.2, 0.3])
    per_token = per_row.unsqueeze(1).expand(3, 4).clone()
    per_token[mask == 0] = PAD  # garbage where padded: must not matter
    from_row = token_covariance(logps, per_row, mask)
    torch.testing.assert_close(token_covariance(logps, per_row.unsqueeze(1), mask), from_row)
    torch.testing.assert_close(token_covariance(logps, per_token, mask), from_row)
    assert from_row.shape == (3, 4)
    assert (from_row[mask == 0] == 0).all()


def test_token_covariance_sums_to_the_covariance_of_the_valid_pairs():
    generator = torch.Generator().manual_seed(0)
    logps = -5 * torch.rand(4, 6, generator=generator)
    advantages = torch.randn(4, 6, generator=generator)
    mask = torch.rand(4, 6, generator=generator) < 0.7
    mask[0, 0] = mask[1, 0] = True
    valid_logps, valid_adv = logps[mask].tolist(), advantages[mask].tolist()
    n = len(valid_logps)
    sample_cov = statistics.covariance(valid_logps, valid_adv)  # sum of products / (n - 1)
    result = token_covariance(logps, advantages, mask)
    assert result.sum().item() == pytest.approx(sample_cov * (n - 1), rel=1e-4, abs=1e-5)


def test_token_covariance_of_an_all_padded_batch_is_zero():
    result = token_covariance(torch.full((2, 3), PAD), torch.tensor([1.0, -1.0]), torch.zeros(2, 3))
    torch.testing.assert_close(result, torch.zeros(2, 3))


def test_token_covariance_carries_no_gradient():
    logps = torch.tensor([[-1.0, -2.0], [-3.0, -0.5]], requires_grad=True)
    advantages = torch.tensor([1.0, -1.0], requires_grad=True)
    result = token_covariance(logps, advantages, torch.ones(2, 2))
    assert not result.requires_grad and result.grad_fn is None
    assert result.abs().sum() > 0


# ----------------------------------------------------------------------------------------------------------------
# kl_cov_mask

# 4 valid tokens, every covariance negative: padded tokens (covariance 0 if they were counted) would outrank all.
# Token means: logp (-1 - 2 - 3 - 4) / 4 = -2.5, advantage (-3 - 1 + 2 + 2) / 4 = 0. Covariances:
# (0, 0): 1.5 * -3 = -4.5   (0, 1): 0.5 * -1 = -0.5   (1, 0): -0.5 * 2 = -1   (1, 1): -1.5 * 2 = -3
NEG_LOGPS = torch.tensor([[-1.0, -2.0, PAD], [-3.0, -4.0, PAD]])
NEG_ADV = torch.tensor([[-3.0, -1.0, PAD], [2.0, 2.0, PAD]])
NEG_MASK = torch.tensor([[1, 1, 0], [1, 1, 0]])
NEG_BY_RANK = [(0, 1), (1, 0), (1, 1), (0, 0)]


def test_negative_example_covariances_are_the_hand_values():
    expected = torch.tensor([[1.5 * -3, 0.5 * -1, 0.0], [-0.5 * 2, -1.5 * 2, 0.0]])
    torch.testing.assert_close(token_covariance(NEG_LOGPS, NEG_ADV, NEG_MASK), expected)


@pytest.mark.parametrize(
    ("ratio", "count"),
    [(0.25, 1), (0.49, 1), (0.5, 2), (0.74, 2), (0.75, 3), (1.0, 4)],  # int(ratio * 4), floored
)
def test_kl_cov_selects_the_top_ratio_by_covariance_and_never_padding(ratio, count):
    selected = kl_cov_mask(NEG_LOGPS, NEG_ADV, NEG_MASK, ratio)
    assert selected.dtype == torch.bool and selected.shape == (2, 3)
    assert _positions(selected) == set(NEG_BY_RANK[:count])


@pytest.mark.parametrize("ratio", [1e-9, 0.01, 0.2])
def test_kl_cov_selects_at_least_one_token(ratio):
    assert _positions(kl_cov_mask(NEG_LOGPS, NEG_ADV, NEG_MASK, ratio)) == {NEG_BY_RANK[0]}


def test_kl_cov_on_a_larger_batch_with_per_row_advantages():
    # Advantages +1 / -1 by row: token mean 0, so covariance is (logp - mean) for row 0 and -(logp - mean) for row 1.
    row0 = [-0.1, -0.5, -1.0, -2.0, -4.0]
    row1 = [-0.3, -0.7, -1.5, -3.0, -6.0]
    mean = (sum(row0) + sum(row1)) / 10  # -1.91
    covariance = {(0, t): v - mean for t, v in enumerate(row0)} | {(1, t): -(v - mean) for t, v in enumerate(row1)}
    # 4.09 (1,4) > 1.81 (0,0) > 1.41 (0,1) > 1.09 (1,3) > 0.91 (0,2) > -0.09 (0,3) > ...
    ranked = [(1, 4), (0, 0), (0, 1), (1, 3), (0, 2), (0, 3)]
    assert sorted(covariance, key=covariance.get, reverse=True)[:6] == ranked
    logps, advantages = torch.tensor([row0, row1]), torch.tensor([1.0, -1.0])
    mask = torch.ones(2, 5, dtype=torch.bool)
    assert _positions(kl_cov_mask(logps, advantages, mask, 0.35)) == set(ranked[:3])  # int(3.5) = 3
    assert _positions(kl_cov_mask(logps, advantages, mask, 0.45)) == set(ranked[:4])  # int(4.5) = 4
    assert _positions(kl_cov_mask(logps, advantages, mask, 1e-4)) == set(ranked[:1])


def test_kl_cov_never_selects_padding_even_when_it_would_rank_first():
    # The padded token's garbage logp/advantage would give it the largest covariance by far if it were counted.
    logps = torch.tensor([[-1.0, -2.0, 50.0]])
    advantages = torch.tensor([[1.0, -1.0, 50.0]])
    mask = torch.tensor([[1, 1, 0]])
    # Means over valid: logp -1.5, advantage 0: covariances 0.5 * 1 = 0.5 and -0.5 * -1 = 0.5, padding excluded.
    assert _positions(kl_cov_mask(logps, advantages, mask, 1.0)) == {(0, 0), (0, 1)}
    assert len(_positions(kl_cov_mask(logps, advantages, mask, 0.5))) == 1
    assert not kl_cov_mask(logps, advantages, mask, 0.5)[0, 2]


def test_kl_cov_selects_nothing_without_valid_tokens():
    selected = kl_cov_mask(NEG_LOGPS, NEG_ADV, torch.zeros(2, 3), 1.0)
    assert selected.dtype == torch.bool and selected.shape == (2, 3) and not selected.any()


# ----------------------------------------------------------------------------------------------------------------
# clip_cov_mask


def test_banded_example_has_the_designed_covariances():
    logps, advantages, mask = _banded(rows=2, band_cols=2, high_cols=1, pad_cols=1)
    expected = torch.tensor([[1.0, 1.0, 10.0, 0.0], [1.0, 1.0, 10.0, 0.0]])
    torch.testing.assert_close(token_covariance(logps, advantages, mask), expected)


@pytest.mark.parametrize(
    ("lower", "upper", "band"),
    [
        (0.5, 1.5, "band"),
        (0.5, 10.0, "band"),  # 10 is not strictly below the upper bound
        (1.0, 10.5, "high"),  # 1 is not strictly above the lower bound
        (0.5, 10.5, "both"),
        (1.0, 10.0, "none"),
        (-1.0, 0.5, "none"),  # padded tokens (covariance 0, inside this band) are never candidates
    ],
)
def test_clip_cov_draws_only_valid_tokens_strictly_inside_the_band(lower, upper, band):
    rows, band_cols, high_cols = 4, 3, 2
    logps, advantages, mask = _banded(rows, band_cols, high_cols, pad_cols=2)
    band_tokens = _band_positions(rows, band_cols)
    high_tokens = {(r, c) for r in range(rows) for c in range(band_cols, band_cols + high_cols)}
    candidates = {"band": band_tokens, "high": high_tokens, "both": band_tokens | high_tokens, "none": set()}[band]
    # ratio 1: as many as there are valid tokens (20), so every candidate and nothing else.
    selected = clip_cov_mask(logps, advantages, mask, 1.0, lower, upper, generator=torch.Generator().manual_seed(0))
    assert selected.dtype == torch.bool and selected.shape == (4, 7)
    assert _positions(selected) == candidates


@pytest.mark.parametrize(
    ("ratio", "count"),
    [
        (1e-6, 1),  # at least one
        (0.1, 2),  # int(0.1 * 24) = int(2.4)
        (0.125, 3),  # int(3.0)
        (0.49, 11),  # int(11.76)
        (0.5, 12),  # int(12.0): every candidate
        (0.75, 12),  # int(18) > 12 candidates: capped at the candidates
        (1.0, 12),
    ],
)
def test_clip_cov_count_is_ratio_of_valid_tokens_capped_by_candidates(ratio, count):
    # 24 valid tokens (4 rows x 6), 12 of them in the band (covariance 1), 12 above it (covariance 10).
    logps, advantages, mask = _banded(rows=4, band_cols=3, high_cols=3, pad_cols=1)
    band = _band_positions(4, 3)
    for seed in range(5):
        generator = torch.Generator().manual_seed(seed)
        selected = _positions(clip_cov_mask(logps, advantages, mask, ratio, 0.5, 1.5, generator=generator))
        assert len(selected) == count and selected <= band


def test_clip_cov_with_a_seeded_generator_is_reproducible_and_seeds_differ():
    # 100 candidates (10 rows x 10 band tokens) among 200 valid tokens: ratio 0.05 -> 10 chosen.
    logps, advantages, mask = _banded(rows=10, band_cols=10, high_cols=10, pad_cols=2)
    band = _band_positions(10, 10)

    def draw(seed: int) -> frozenset:
        generator = torch.Generator().manual_seed(seed)
        return frozenset(_positions(clip_cov_mask(logps, advantages, mask, 0.05, 0.5, 1.5, generator=generator)))

    draws = [draw(seed) for seed in range(6)]
    assert draws == [draw(seed) for seed in range(6)]
    assert len(set(draws)) == len(draws)  # C(100, 10) subsets: a repeat among 6 seeds would mean no randomness
    for subset in draws:
        assert len(subset) == 10 and subset <= band


def test_clip_cov_without_a_generator_uses_the_global_rng():
    logps, advantages, mask = _banded(rows=10, band_cols=10, high_cols=10, pad_cols=2)
    torch.manual_seed(1)
    first = _positions(clip_cov_mask(logps, advantages, mask, 0.05, 0.5, 1.5))
    torch.manual_seed(1)
    assert _positions(clip_cov_mask(logps, advantages, mask, 0.05, 0.5, 1.5)) == first
    assert len(first) == 10 and first <= _band_positions(10, 10)


def test_clip_cov_picks_each_candidate_about_equally_often():
    # 12 candidates among 24 valid tokens, ratio 0.125 -> 3 per draw: each candidate with frequency 3 / 12.
    logps, advantages, mask = _banded(rows=4, band_cols=3, high_cols=3, pad_cols=1)
    draws = 2000
    counts = torch.zeros(4, 7)
    for seed in range(draws):
        generator = torch.Generator().manual_seed(seed)
        counts += clip_cov_mask(logps, advantages, mask, 0.125, 0.5, 1.5, generator=generator).float()
    frequency = counts / draws
    band = frequency[:, :3]
    # Binomial std of a frequency: sqrt(0.25 * 0.75 / 2000) ~ 0.0097; 0.05 is over 5 std.
    assert (band - 3 / 12).abs().max() < 0.05
    assert (frequency[:, 3:] == 0).all()
    assert counts.sum() == 3 * draws


def test_clip_cov_never_picks_ineligible_tokens():
    rows, band_cols = 4, 3
    logps, advantages, mask = _banded(rows, band_cols, high_cols=3, pad_cols=1)
    eligible = torch.ones(4, 7, dtype=torch.bool)
    excluded = {(0, 0), (1, 2), (2, 1), (3, 0), (3, 1)}
    for r, c in excluded:
        eligible[r, c] = False
    allowed = _band_positions(rows, band_cols) - excluded  # 7 left
    # ratio 1 -> 24 wanted, capped at the 7 eligible candidates.
    selected = clip_cov_mask(logps, advantages, mask, 1.0, 0.5, 1.5, eligible, torch.Generator().manual_seed(0))
    assert _positions(selected) == allowed
    seen = set()
    for seed in range(200):
        generator = torch.Generator().manual_seed(seed)
        picked = _positions(clip_cov_mask(logps, advantages, mask, 0.125, 0.5, 1.5, eligible, generator))
        assert len(picked) == 3 and picked <= allowed
        seen |= picked
    assert seen == allowed


def test_clip_cov_selects_nothing_without_candidates():
    logps, advantages, mask = _banded(rows=2, band_cols=2, high_cols=2, pad_cols=1)
    generator = torch.Generator().manual_seed(0)
    assert not clip_cov_mask(logps, advantages, mask, 1.0, 20.0, 30.0, generator=generator).any()
    assert not clip_cov_mask(logps, advantages, mask, 1.0, 0.5, 1.5, torch.zeros(2, 5, dtype=torch.bool)).any()
    assert not clip_cov_mask(logps, advantages, torch.zeros(2, 5), 1.0, -100.0, 100.0, generator=generator).any()


# ----------------------------------------------------------------------------------------------------------------
# entropy_advantage_bonus


def test_entropy_bonus_is_min_of_alpha_entropy_and_advantage_over_kappa():
    entropies = torch.tensor([[0.4, 2.0, 5.0], [0.6, 3.0, 0.0], [1.0, 4.0, 9.0]])
    advantages = torch.tensor([2.0, -1.0, 0.0])
    alpha, kappa = 0.5, 2.0
    cap = [2 / kappa, 1 / kappa, 0 / kappa]  # |A| / kappa per row
    expected = torch.tensor(
        [
            [min(alpha * 0.4, cap[0]), min(alpha * 2.0, cap[0]), min(alpha * 5.0, cap[0])],
            [min(alpha * 0.6, cap[1]), min(alpha * 3.0, cap[1]), min(alpha * 0.0, cap[1])],
            [0.0, 0.0, 0.0],  # A = 0: no bonus whatever the entropy
        ]
    )
    torch.testing.assert_close(entropy_advantage_bonus(entropies, advantages, alpha, kappa), expected)
    torch.testing.assert_close(expected[:2], torch.tensor([[0.2, 1.0, 1.0], [0.3, 0.5, 0.0]]))  # the arithmetic


def test_entropy_bonus_with_per_token_advantages_uses_their_absolute_value():
    entropies = torch.tensor([[1.0, 1.0, 1.0, 3.0]])
    advantages = torch.tensor([[-0.3, 0.3, -3.0, 0.0]])
    alpha, kappa = 0.4, 1.5
    expected = torch.tensor([[0.3 / kappa, 0.3 / kappa, alpha * 1.0, 0.0]])  # 0.2, 0.2, min(0.4, 2), 0
    torch.testing.assert_close(entropy_advantage_bonus(entropies, advantages, alpha, kappa), expected)


def test_entropy_bonus_is_the_same_for_a_and_minus_a_and_any_advantage_shape():
    generator = torch.Generator().manual_seed(0)
    entropies = 3 * torch.rand(4, 5, generator=generator)
    advantages = torch.randn(4, generator=generator)
    bonus = entropy_advantage_bonus(entropies, advantages, 0.4, 2.0)
    torch.testing.assert_close(entropy_advantage_bonus(entropies, -advantages, 0.4, 2.0), bonus)
    torch.testing.assert_close(entropy_advantage_bonus(entropies, advantages.unsqueeze(1), 0.4, 2.0), bonus)
    torch.testing.assert_close(
        entropy_advantage_bonus(entropies, advantages.unsqueeze(1).expand(4, 5), 0.4, 2.0), bonus
    )


def test_entropy_bonus_vanishes_with_zero_alpha():
    bonus = entropy_advantage_bonus(torch.tensor([[2.0, 5.0]]), torch.tensor([1.0]), 0.0, 2.0)
    torch.testing.assert_close(bonus, torch.zeros(1, 2))


def test_entropy_bonus_detaches_the_entropy():
    entropies = torch.tensor([[0.5, 2.0]], requires_grad=True)
    advantages = torch.tensor([1.0], requires_grad=True)
    bonus = entropy_advantage_bonus(entropies, advantages, 0.4, 2.0)
    assert not bonus.requires_grad and bonus.grad_fn is None
    torch.testing.assert_close(bonus, torch.tensor([[0.4 * 0.5, 1.0 / 2.0]]))


@pytest.mark.parametrize("kappa", [0.0, -1.0])
def test_entropy_bonus_rejects_a_non_positive_kappa(kappa):
    with pytest.raises(ValueError, match="kappa"):
        entropy_advantage_bonus(torch.ones(1, 2), torch.ones(1), 0.4, kappa)


@pytest.mark.parametrize("kappa", [1.01, 1.5, 2.0, 10.0])
def test_adding_the_entropy_bonus_never_flips_the_advantage_sign(kappa):
    generator = torch.Generator().manual_seed(int(kappa * 100))
    entropies = 10 * torch.rand(16, 12, generator=generator)  # large: the |A| / kappa cap is often the minimum
    advantages = torch.randn(16, 12, generator=generator)
    advantages[::3, ::2] = 0.0
    bonus = entropy_advantage_bonus(entropies, advantages, 1.0, kappa)
    assert (bonus >= 0).all()
    assert (bonus <= advantages.abs() / kappa + 1e-7).all()
    assert (bonus < 0.9999 * advantages.abs() / kappa).any() and (bonus == advantages.abs() / kappa).any()
    shaped = advantages + bonus
    assert torch.equal(torch.sign(shaped), torch.sign(advantages))


# ----------------------------------------------------------------------------------------------------------------
# Config validation

CONFIG_CLASSES = [AsymGRPOConfig, PolicySplitConfig]


def _config(config_class, tmp_path, **overrides):
    return config_class(**trainer_settings(tmp_path, output_dir=str(tmp_path), bf16=False, **overrides))


@pytest.mark.parametrize("config_class", CONFIG_CLASSES)
def test_baselines_are_off_by_default(config_class, tmp_path):
    config = _config(config_class, tmp_path)
    assert config.policy_loss == "ppo" and config.entropy_advantage_alpha == 0.0


@pytest.mark.parametrize("config_class", CONFIG_CLASSES)
@pytest.mark.parametrize(
    "overrides",
    [
        {"policy_loss": "ppo"},
        {"policy_loss": "clip_cov"},
        {"policy_loss": "kl_cov"},
        {"clip_cov_ratio": 1.0, "kl_cov_ratio": 1.0},
        {"clip_cov_ratio": 1e-6, "kl_cov_ratio": 1e-6},
        {"clip_cov_lb": -2.0, "clip_cov_ub": -1.0},
        {"kl_cov_coef": 0.0, "entropy_advantage_alpha": 0.0},
        {"entropy_advantage_alpha": 0.4, "entropy_advantage_kappa": 0.5},
    ],
)
def test_valid_baseline_values_are_accepted(config_class, overrides, tmp_path):
    config = _config(config_class, tmp_path, **overrides)
    assert all(getattr(config, name) == value for name, value in overrides.items())


@pytest.mark.parametrize("config_class", CONFIG_CLASSES)
@pytest.mark.parametrize("policy_loss", ["clip_cov+kl_cov", "kl_cov,clip_cov", "grpo", ""])
def test_unknown_policy_loss_is_rejected_and_combination_explained(config_class, policy_loss, tmp_path):
    with pytest.raises(ValueError, match="policy_loss") as error:
        _config(config_class, tmp_path, policy_loss=policy_loss)
    assert "cannot be combined" in str(error.value)


@pytest.mark.parametrize("config_class", CONFIG_CLASSES)
@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"clip_cov_ratio": 0.0}, "clip_cov_ratio"),
        ({"clip_cov_ratio": -0.1}, "clip_cov_ratio"),
        ({"clip_cov_ratio": 1.5}, "clip_cov_ratio"),
        ({"clip_cov_ratio": float("nan")}, "clip_cov_ratio"),
        ({"kl_cov_ratio": 0.0}, "kl_cov_ratio"),
        ({"kl_cov_ratio": 1.0001}, "kl_cov_ratio"),
        ({"kl_cov_ratio": -2e-3}, "kl_cov_ratio"),
        ({"clip_cov_lb": 5.0, "clip_cov_ub": 5.0}, "clip_cov_lb"),
        ({"clip_cov_lb": 6.0, "clip_cov_ub": 5.0}, "clip_cov_lb"),
        ({"clip_cov_lb": 1.0, "clip_cov_ub": 0.5}, "clip_cov_ub"),
        ({"kl_cov_coef": -0.1}, "kl_cov_coef"),
        ({"entropy_advantage_alpha": -0.4}, "entropy_advantage_alpha"),
        ({"entropy_advantage_kappa": 0.0}, "entropy_advantage_kappa"),
        ({"entropy_advantage_kappa": -2.0}, "entropy_advantage_kappa"),
    ],
)
def test_wrong_baseline_values_name_the_field(config_class, overrides, field, tmp_path):
    with pytest.raises(ValueError, match=field):
        _config(config_class, tmp_path, **overrides)
