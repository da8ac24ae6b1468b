"""rl/ppo_math.py and core/logps.py against values computed by hand."""
import math

import pytest
import torch
import torch.nn.functional as F

from core.logps import sequence_logps, token_logps
from rl.ppo_math import (
    AdaptiveKLController,
    FixedKLController,
    entropy_from_logits,
    explained_variance,
    gae,
    kl_penalty,
    masked_mean,
    masked_var,
    masked_whiten,
    per_token_rewards,
    policy_loss,
    value_loss,
)


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


# --- masked statistics -------------------------------------------------------------------------


def test_masked_mean_and_var_ignore_padding():
    """x = (1, 2, 3, pad 100): mean = 6/3 = 2; squared deviations (1, 0, 1): biased var = 2/3,
    unbiased = 2/2 = 1. Per row (dim=1), rows (1, 2, 3, pad) and (4, pad, pad, pad): (2, 4)."""
    x, mask = t([[1, 2, 3, 100]]), t([[1, 1, 1, 0]])
    assert masked_mean(x, mask).item() == pytest.approx(2.0)
    assert masked_var(x, mask).item() == pytest.approx(1.0)
    assert masked_var(x, mask, unbiased=False).item() == pytest.approx(2 / 3)
    x2, mask2 = t([[1, 2, 3, 100], [4, 50, 60, 70]]), t([[1, 1, 1, 0], [1, 0, 0, 0]])
    assert masked_mean(x2, mask2, dim=1).tolist() == pytest.approx([2.0, 4.0])


def test_masked_whiten_ignores_padding():
    """x = (2, 4, 6, pad 1000): mean 4, unbiased var (4 + 0 + 4)/2 = 4, std 2 → (−1, 0, 1, 0).
    shift_mean=False adds the mean back: (3, 4, 5, 0). Changing the pad value changes nothing."""
    mask = t([[1, 1, 1, 0]])
    w = masked_whiten(t([[2, 4, 6, 1000]]), mask)
    assert w.tolist()[0] == pytest.approx([-1, 0, 1, 0], abs=1e-6)
    assert masked_whiten(t([[2, 4, 6, 1000]]), mask, shift_mean=False).tolist()[0] == pytest.approx([3, 4, 5, 0], abs=1e-6)
    torch.testing.assert_close(masked_whiten(t([[2, 4, 6, -7]]), mask), w)


# --- KL and rewards ----------------------------------------------------------------------------


def test_kl_estimators_hand_values():
    """Token 0: log π = −1, log π_ref = −1.5, d = 0.5: k1 = 0.5; k2 = ½·0.25 = 0.125;
      r = e^(−1.5 + 1) = e^-0.5 = 0.606531, k3 = (0.606531 − 1) − (−0.5) = 0.106531.
    Token 1: log π = −2, log π_ref = −1, d = −1: k1 = −1; k2 = 0.5; r = e^1 = 2.718282,
      k3 = 1.718282 − 1 = 0.718282."""
    logp, ref = t([-1.0, -2.0]), t([-1.5, -1.0])
    assert kl_penalty(logp, ref, "k1").tolist() == pytest.approx([0.5, -1.0])
    assert kl_penalty(logp, ref, "k2").tolist() == pytest.approx([0.125, 0.5])
    assert kl_penalty(logp, ref, "k3").tolist() == pytest.approx([0.106531, 0.718282], abs=1e-6)
    with pytest.raises(ValueError):
        kl_penalty(logp, ref, "k4")


def test_per_token_rewards():
    """kl_coef 0.1, scores (1, 2).
    Row 0, kl (0.1, 0.2, 0.3), all valid: (−0.01, −0.02, −0.03 + 1) = (−0.01, −0.02, 0.97).
    Row 1, kl (0.5, −0.5, pad 9), last valid index 1: (−0.05, 0.05 + 2, 0) = (−0.05, 2.05, 0)."""
    r = per_token_rewards(t([1.0, 2.0]), t([[0.1, 0.2, 0.3], [0.5, -0.5, 9.0]]), t([[1, 1, 1], [1, 1, 0]]), 0.1)
    assert r.tolist()[0] == pytest.approx([-0.01, -0.02, 0.97], abs=1e-6)
    assert r.tolist()[1] == pytest.approx([-0.05, 2.05, 0.0], abs=1e-6)


def test_per_token_rewards_empty_row_gets_no_score():
    r = per_token_rewards(t([5.0]), t([[0.3, 0.3]]), t([[0, 0]]), 0.1)
    assert r.tolist() == [[0.0, 0.0]]


# --- GAE ---------------------------------------------------------------------------------------


def test_gae_three_tokens_and_padding():
    """γ = 0.9, λ = 0.8, γλ = 0.72.
    Row 0: r = (0, 0, 1), V = (0.5, 0.4, 0.3), V after the end = 0.
      δ2 = 1 + 0 − 0.3 = 0.7;  δ1 = 0 + 0.9·0.3 − 0.4 = −0.13;  δ0 = 0 + 0.9·0.4 − 0.5 = −0.14
      A2 = 0.7;  A1 = −0.13 + 0.72·0.7 = 0.374;  A0 = −0.14 + 0.72·0.374 = 0.12928
      returns = A + V = (0.62928, 0.774, 1.0)
    Row 1: r = (0, 1, pad 5), V = (0.5, 0.4, pad 9), mask (1, 1, 0): the pad is ignored.
      δ1 = 1 + 0 − 0.4 = 0.6;  δ0 = 0.9·0.4 − 0.5 = −0.14;  A1 = 0.6;  A0 = −0.14 + 0.72·0.6 = 0.292
      A = (0.292, 0.6, 0), returns = (0.792, 1.0, 0)."""
    rewards = t([[0, 0, 1], [0, 1, 5]])
    values = t([[0.5, 0.4, 0.3], [0.5, 0.4, 9.0]]).requires_grad_()
    mask = t([[1, 1, 1], [1, 1, 0]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    assert adv.tolist()[0] == pytest.approx([0.12928, 0.374, 0.7], abs=1e-6)
    assert ret.tolist()[0] == pytest.approx([0.62928, 0.774, 1.0], abs=1e-6)
    assert adv.tolist()[1] == pytest.approx([0.292, 0.6, 0.0], abs=1e-6)
    assert ret.tolist()[1] == pytest.approx([0.792, 1.0, 0.0], abs=1e-6)
    assert not adv.requires_grad and not ret.requires_grad


def test_gae_left_padding_matches_unpadded():
    """Row 1 of the previous test left-padded, (pad, 0, 1), gives the same numbers shifted right."""
    adv, ret = gae(t([[7, 0, 1]]), t([[3.0, 0.5, 0.4]]), t([[0, 1, 1]]), gamma=0.9, lam=0.8)
    assert adv.tolist()[0] == pytest.approx([0.0, 0.292, 0.6], abs=1e-6)
    assert ret.tolist()[0] == pytest.approx([0.0, 0.792, 1.0], abs=1e-6)


# --- losses ------------------------------------------------------------------------------------


def test_policy_loss_clip_cases():
    """clip_eps = 0.2, one row of 4 tokens plus a pad. L = max(−ρA, −clip(ρ, 0.8, 1.2)A):
      A = +1, ρ = 1.5: max(−1.5, −1.2) = −1.2   clipped (no gain beyond 1 + ε)
      A = −1, ρ = 0.5: max(0.5, 0.8) = 0.8      clipped (no gain below 1 − ε)
      A = +1, ρ = 0.5: max(−0.5, −0.8) = −0.5   unclipped (pessimistic side)
      A = −1, ρ = 1.5: max(1.5, 1.2) = 1.5      unclipped
    loss = (−1.2 + 0.8 − 0.5 + 1.5)/4 = 0.6/4 = 0.15; clipfrac = 2/4 = 0.5; mean ρ = 4/4 = 1.
    approx_kl: ρ = 1.5: 0.5 − ln 1.5 = 0.094535; ρ = 0.5: −0.5 + ln 2 = 0.193147;
      mean = (2·0.094535 + 2·0.193147)/4 = 0.143841.
    Gradient w.r.t. log π: 0 where clipped; −Aρ/4 elsewhere: −0.5/4 = −0.125 and 1.5/4 = 0.375."""
    ratio = t([[1.5, 0.5, 0.5, 1.5, 3.0]])
    old = t([[-1.0] * 5])
    logp = (old + ratio.log()).requires_grad_()
    adv = t([[1.0, -1.0, 1.0, -1.0, 100.0]])
    mask = t([[1, 1, 1, 1, 0]])
    loss, m = policy_loss(logp, old, adv, mask, clip_eps=0.2)
    assert loss.item() == pytest.approx(0.15, abs=1e-6)
    assert m["clipfrac"].item() == pytest.approx(0.5)
    assert m["ratio"].item() == pytest.approx(1.0, abs=1e-6)
    assert m["approx_kl"].item() == pytest.approx(0.143841, abs=1e-6)
    loss.backward()
    assert logp.grad.tolist()[0] == pytest.approx([0.0, 0.0, -0.125, 0.375, 0.0], abs=1e-6)


def test_value_loss_clip_cases():
    """clip_eps_value = 0.2, V_old = 0.5 everywhere, V_clip = 0.5 + clip(V − 0.5, −0.2, 0.2):
      V = 1.0, R = 1: V_clip = 0.7; max(0, 0.09) = 0.09        clipped
      V = 0.6, R = 1: V_clip = 0.6; max(0.16, 0.16) = 0.16     not clipped
      V = 0.0, R = 0: V_clip = 0.3; max(0, 0.09) = 0.09        clipped
      V = 0.0, R = 1: V_clip = 0.3; max(1, 0.49) = 1           not clipped
    loss = ½·(0.09 + 0.16 + 0.09 + 1)/4 = ½·0.335 = 0.1675; vf_clipfrac = 2/4 = 0.5. The pad is ignored."""
    values = t([[1.0, 0.6, 0.0, 0.0, 50.0]]).requires_grad_()
    old = t([[0.5] * 5])
    returns = t([[1.0, 1.0, 0.0, 1.0, -50.0]])
    loss, m = value_loss(values, old, returns, t([[1, 1, 1, 1, 0]]), clip_eps_value=0.2)
    assert loss.item() == pytest.approx(0.1675, abs=1e-6)
    assert m["vf_clipfrac"].item() == pytest.approx(0.5)
    loss.backward()
    # clipped tokens give no gradient; V = 0.6: (0.6 − 1)/4 = −0.1; V = 0, R = 1: (0 − 1)/4 = −0.25
    assert values.grad.tolist()[0] == pytest.approx([0.0, -0.1, 0.0, -0.25, 0.0], abs=1e-6)


def test_entropy_from_logits():
    """Uniform over 4: ln 4 = 1.386294. p = (0.5, 0.25, 0.25): 0.5 ln 2 + 2·0.25 ln 4 = 0.346574 + 0.693147
    = 1.039721. Adding a constant to the logits changes nothing."""
    logits = torch.stack([torch.zeros(3), torch.tensor([0.5, 0.25, 0.25]).log()])  # (2, 3)
    h = entropy_from_logits(logits[None])  # (1, 2)
    assert h.tolist()[0] == pytest.approx([math.log(3), 1.039721], abs=1e-6)
    assert entropy_from_logits(torch.zeros(1, 1, 4)).item() == pytest.approx(1.386294, abs=1e-6)
    torch.testing.assert_close(entropy_from_logits(logits[None] + 7.0), h)


def test_explained_variance():
    """R = (1, 2, 3, pad): V = R → 1; V = 0 → 1 − Var R / Var R = 0.
    V = (1, 2, 4): R − V = (0, 0, −1), biased var = 2/9; Var R = 2/3; 1 − (2/9)/(2/3) = 2/3."""
    returns, mask = t([[1, 2, 3, 9]]), t([[1, 1, 1, 0]])
    assert explained_variance(t([[1, 2, 3, -5]]), returns, mask).item() == pytest.approx(1.0)
    assert explained_variance(t([[0, 0, 0, 0]]), returns, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert explained_variance(t([[1, 2, 4, 0]]), returns, mask).item() == pytest.approx(2 / 3, abs=1e-6)


# --- KL controllers ----------------------------------------------------------------------------


def test_adaptive_kl_controller_step():
    """β = 0.1, target 6, horizon 10000, n_steps 256 (256/10000 = 0.0256):
      KL 9:   9/6 − 1 = 0.5 → clip 0.2;  β = 0.1·(1 + 0.2·0.0256) = 0.1·1.00512 = 0.100512
      KL 3:   3/6 − 1 = −0.5 → −0.2;     β = 0.1·0.99488 = 0.099488 (fresh controller)
      KL 6.6: 0.1 (inside the clip);     β = 0.1·1.00256 = 0.100256"""
    for kl, expected in [(9.0, 0.100512), (3.0, 0.099488), (6.6, 0.100256)]:
        ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
        assert ctl.update(torch.tensor(kl), n_steps=256) == pytest.approx(expected, abs=1e-9)
        assert ctl.value == pytest.approx(expected, abs=1e-9)
    fixed = FixedKLController(0.05)
    assert fixed.update(100.0, 256) == 0.05 and fixed.value == 0.05


# --- log-probs ---------------------------------------------------------------------------------


LOGITS = torch.tensor([0.0, 0.1, 0.2, 0.3]).repeat(2, 3, 1)  # (2, 3, 4), the same row everywhere
LABELS = torch.tensor([[0, 1, 3], [2, 2, -100]])  # -100 at the masked position, as HF writes it
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])


def test_sequence_logps_hand_values():
    """logsumexp(0, 0.1, 0.2, 0.3) = log(1 + 1.105171 + 1.221403 + 1.349859) = log(4.676433) = 1.542536,
    so log p(k) = 0.1k − 1.542536.
      row 0, labels (0, 1, 3): 0.4 − 3·1.542536 = −4.227607
      row 1, labels (2, 2, masked): 0.4 − 2·1.542536 = −2.685071
    temperature 0.5 → logits (0, 0.2, 0.4, 0.6), logsumexp = log(5.535347) = 1.711154:
      row 0: 0.8 − 3·1.711154 = −4.333462;  row 1: 0.8 − 2·1.711154 = −2.622308"""
    assert sequence_logps(LOGITS, LABELS, MASK).tolist() == pytest.approx([-4.227607, -2.685071], abs=1e-5)
    assert sequence_logps(LOGITS, LABELS, MASK, temperature=0.5).tolist() == pytest.approx(
        [-4.333462, -2.622308], abs=1e-5
    )
    per_token = token_logps(LOGITS, LABELS, MASK)
    assert per_token.shape == (2, 3) and per_token[1, 2].item() == 0.0


def test_logps_match_log_softmax_gather():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, requires_grad=True)
    labels = torch.randint(0, 4, (2, 3))
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    for temperature in (1.0, 0.7):
        manual = F.log_softmax(logits / temperature, dim=-1).gather(-1, labels[..., None]).squeeze(-1)
        torch.testing.assert_close(token_logps(logits, labels, mask, temperature), manual * mask)
        torch.testing.assert_close(sequence_logps(logits, labels, mask, temperature), (manual * mask).sum(-1))
    sequence_logps(logits, labels, mask).sum().backward()
    assert logits.grad[0, 2].abs().sum() == 0  # the masked position gets no gradient
    assert logits.grad[0, 0].abs().sum() > 0
    with pytest.raises(ValueError):
        token_logps(logits, labels, mask, temperature=0.0)
