"""rl/dpo_loss.py against values computed by hand.

Shared example: β = 0.1, log π(y_c) = −10, log π(y_r) = −12, log π_ref(y_c) = log π_ref(y_r) = −11.
Log-ratios: chosen −10 − (−11) = 1, rejected −12 − (−11) = −1; h = 0.1·(1 − (−1)) = 0.2.
softplus(−0.2) = log(1 + e^-0.2) = log(1.818731) = 0.598139; softplus(0.2) = 0.2 + 0.598139 = 0.798139.
"""
import pytest
import torch

from rl.dpo_loss import dpo_loss, smoothing_from_agreement

BETA = 0.1


def logps(n=1, requires_grad=False):
    mk = lambda v: torch.full((n,), v, requires_grad=requires_grad)  # noqa: E731
    return mk(-10.0), mk(-12.0), mk(-11.0), mk(-11.0)


def test_sigmoid_hand_value_and_rewards():
    """L = −log σ(0.2) = 0.598139. Implicit rewards β(log π − log π_ref): 0.1·1 = 0.1, 0.1·(−1) = −0.1."""
    losses, rc, rr = dpo_loss(*logps(), beta=BETA)
    assert losses.item() == pytest.approx(0.598139, abs=1e-6)
    assert rc.item() == pytest.approx(0.1) and rr.item() == pytest.approx(-0.1)


def test_conservative_dpo():
    """ε = 0.1: −0.9 log σ(0.2) − 0.1 log σ(−0.2) = 0.9·0.598139 + 0.1·0.798139 = 0.538325 + 0.079814
    = 0.618139 (= softplus(−h) + εh = 0.598139 + 0.02)."""
    losses, _, _ = dpo_loss(*logps(), beta=BETA, label_smoothing=0.1)
    assert losses.item() == pytest.approx(0.618139, abs=1e-6)


def test_per_example_smoothing_matches_scalar_calls():
    """ε = (0, 0.1) on two copies of the example: (0.598139, 0.618139), each equal to the scalar call."""
    losses, _, _ = dpo_loss(*logps(2), beta=BETA, label_smoothing=torch.tensor([0.0, 0.1]))
    assert losses.tolist() == pytest.approx([0.598139, 0.618139], abs=1e-6)
    for i, eps in enumerate((0.0, 0.1)):
        assert losses[i].item() == pytest.approx(dpo_loss(*logps(), beta=BETA, label_smoothing=eps)[0].item())
    robust, _, _ = dpo_loss(*logps(2), beta=BETA, loss_type="robust", label_smoothing=torch.tensor([0.0, 0.1]))
    assert robust.tolist() == pytest.approx([0.598139, 0.573139], abs=1e-6)
    with pytest.raises(ValueError):
        dpo_loss(*logps(2), beta=BETA, label_smoothing=torch.tensor([0.0, 0.1, 0.2]))


def test_ipo():
    """h/β = 2 (the log-ratio difference), 1/(2β) = 5: (2 − 5)² = 9."""
    losses, _, _ = dpo_loss(*logps(), beta=BETA, loss_type="ipo")
    assert losses.item() == pytest.approx(9.0, abs=1e-5)
    with pytest.raises(ValueError):
        dpo_loss(*logps(), beta=BETA, loss_type="ipo", label_smoothing=0.1)


def test_robust():
    """ε = 0.1: [0.9·0.598139 − 0.1·0.798139] / (1 − 0.2) = (0.538325 − 0.079814)/0.8 = 0.458511/0.8
    = 0.573139 (= softplus(−h) − εh/(1 − 2ε) = 0.598139 − 0.025). ε = 0 is plain DPO."""
    losses, _, _ = dpo_loss(*logps(), beta=BETA, loss_type="robust", label_smoothing=0.1)
    assert losses.item() == pytest.approx(0.573139, abs=1e-6)
    plain, _, _ = dpo_loss(*logps(), beta=BETA, loss_type="robust")
    assert plain.item() == pytest.approx(0.598139, abs=1e-6)


@pytest.mark.parametrize("eps", [0.5, 0.7, torch.tensor([0.1, 0.5])])
def test_robust_rejects_eps_at_or_above_half(eps):
    with pytest.raises(ValueError):
        dpo_loss(*logps(2), beta=BETA, loss_type="robust", label_smoothing=eps)


def test_invalid_arguments():
    with pytest.raises(ValueError):
        dpo_loss(*logps(), beta=BETA, loss_type="hinge")
    with pytest.raises(ValueError):
        dpo_loss(*logps(), beta=0.0)
    with pytest.raises(ValueError):
        dpo_loss(*logps(), beta=BETA, label_smoothing=-0.1)
    with pytest.raises(ValueError):
        dpo_loss(*logps(), beta=BETA, label_smoothing=0.6)


def test_gradients_reach_policy_only():
    """dL/dh = −σ(−h) = −σ(−0.2) = −0.450166; dh/d log π(y_c) = β, dh/d log π(y_r) = −β, so
    grads are −0.1·0.450166 = −0.045017 and +0.045017. The reference gets none (detached inside),
    and the implicit rewards are detached."""
    pc, pr, rc, rr = logps(requires_grad=True)
    losses, chosen_rewards, rejected_rewards = dpo_loss(pc, pr, rc, rr, beta=BETA)
    losses.sum().backward()
    assert pc.grad.item() == pytest.approx(-0.045017, abs=1e-6)
    assert pr.grad.item() == pytest.approx(0.045017, abs=1e-6)
    assert rc.grad is None and rr.grad is None
    assert not chosen_rewards.requires_grad and not rejected_rewards.requires_grad


def test_smoothing_from_agreement_hand_values():
    """ε = (n(1 − a) + 1)/(n + 2), clipped to [0, 0.4]:
      3 of 3:  (0 + 1)/5 = 0.2        2 of 3: (1 + 1)/5 = 0.4
      1 of 1:  (0 + 1)/3 = 0.333333   2 of 4 split: (2 + 1)/6 = 0.5 → clipped to 0.4
      10 of 10: 1/12 = 0.083333
    prior = 0: raw 1 − a, 2 of 3 → 1/3."""
    assert smoothing_from_agreement(1.0, 3) == pytest.approx(0.2)
    assert smoothing_from_agreement(2 / 3, 3) == pytest.approx(0.4)
    assert smoothing_from_agreement(1.0, 1) == pytest.approx(1 / 3)
    assert smoothing_from_agreement(0.5, 4) == pytest.approx(0.4)
    assert smoothing_from_agreement(1.0, 10) == pytest.approx(1 / 12)
    assert smoothing_from_agreement(2 / 3, 3, prior=0.0) == pytest.approx(1 / 3)
    eps = smoothing_from_agreement(torch.tensor([1.0, 2 / 3]), torch.tensor([3, 3]))
    assert eps.tolist() == pytest.approx([0.2, 0.4])
    # usable directly as the robust loss's per-example ε (max_eps < 0.5)
    dpo_loss(*logps(2), beta=BETA, loss_type="robust", label_smoothing=eps)


def test_smoothing_from_agreement_rejects_bad_input():
    with pytest.raises(ValueError):
        smoothing_from_agreement(1.0, 0)
    with pytest.raises(ValueError):
        smoothing_from_agreement(1.2, 3)
    with pytest.raises(ValueError):
        smoothing_from_agreement(1.0, 3, max_eps=0.5)


def test_nll_term_adds_the_chosen_answers_per_token_nll():
    from rl.dpo_trainer import pair_losses

    policy = torch.tensor([-4.0, -6.0])  # [chosen; rejected], summed over 2 and 3 tokens
    ref = torch.tensor([-5.0, -5.0])
    n_tokens = torch.tensor([2, 3])
    # β·margin = 0.5·((−4 + 5) − (−6 + 5)) = 1: −log σ(1) = 0.313262; the NLL term 0.2 · 4/2 = 0.4
    plain = pair_losses(policy, ref, n_tokens, 0.5, "sigmoid")
    with_nll = pair_losses(policy, ref, n_tokens, 0.5, "sigmoid", nll_coef=0.2)
    torch.testing.assert_close(plain, torch.tensor([0.313262]), atol=1e-6, rtol=0)
    torch.testing.assert_close(with_nll, torch.tensor([0.713262]), atol=1e-6, rtol=0)
    # IPO divides the log-probs by the lengths first; the NLL per token is the same 2.0
    ipo = pair_losses(policy, ref, n_tokens, 0.5, "ipo")
    torch.testing.assert_close(pair_losses(policy, ref, n_tokens, 0.5, "ipo", nll_coef=0.2), ipo + 0.4)
    # its gradient raises the chosen answer's log-prob, and leaves the rejected one's as DPO has it
    p = policy.clone().requires_grad_(True)
    (pair_losses(p, ref, n_tokens, 0.5, "sigmoid", nll_coef=0.2) - pair_losses(p, ref, n_tokens, 0.5, "sigmoid")
     ).sum().backward()
    torch.testing.assert_close(p.grad, torch.tensor([-0.1, 0.0]))
