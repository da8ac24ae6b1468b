"""reward/loss.py against values computed by hand.

softplus(x) = log(1 + e^x), so −log σ(Δ) = softplus(−Δ) and −log σ(−Δ) = softplus(Δ) = Δ + softplus(−Δ).
"""
import math

import pytest
import torch

from reward.loss import expected_calibration_error, length_offset, margin_from_ratings, pairwise_loss


def t(*xs):
    return torch.tensor(xs, dtype=torch.float32)


def test_bradley_terry_hand_values():
    """Row 0: r_c = 2, r_r = 0.5 → Δ = 1.5, loss = log(1 + e^-1.5) = log(1.223130) = 0.201413.
    Row 1: r_c = 0, r_r = 1 → Δ = −1, loss = log(1 + e^1) = log(3.718282) = 1.313262.
    accuracy = 1/2 (only row 0 has Δ > 0); margin = (1.5 + (−1)) / 2 = 0.25;
    reward_sum_sq = ((2 + 0.5)² + (0 + 1)²) / 2 = (6.25 + 1) / 2 = 3.625."""
    loss, m = pairwise_loss(t(2.0, 0.0), t(0.5, 1.0))
    assert loss.shape == (2,)
    assert loss.tolist() == pytest.approx([0.201413, 1.313262], abs=1e-6)
    assert m["accuracy"].item() == pytest.approx(0.5)
    assert m["margin"].item() == pytest.approx(0.25)
    assert m["reward_sum_sq"].item() == pytest.approx(3.625)


def test_margin_shifts_delta_but_not_metrics():
    """m = 1: Δ = 2 − 0.5 − 1 = 0.5, loss = log(1 + e^-0.5) = log(1.606531) = 0.474077.
    Row 1 with m = 0 (per-example tensor): unchanged 1.313262.
    accuracy and margin use r_c − r_r without m: still 1/2 and 0.25."""
    loss, m = pairwise_loss(t(2.0, 0.0), t(0.5, 1.0), margin=t(1.0, 0.0))
    assert loss.tolist() == pytest.approx([0.474077, 1.313262], abs=1e-6)
    assert m["accuracy"].item() == pytest.approx(0.5)
    assert m["margin"].item() == pytest.approx(0.25)
    scalar, _ = pairwise_loss(t(2.0), t(0.5), margin=1.0)
    assert scalar.item() == pytest.approx(0.474077, abs=1e-6)


def test_length_offset_hand_values_and_gradient():
    """w = 0.5; row 0: chosen twice as long (log 2 = 0.693147), row 1: same length. With r_c = r_r = 0,
    Δ = 0 − (−0.5 · 0.693147) = 0.346574: loss = log(1 + e^−0.346574) = log(1.707107) = 0.534800; row 1:
    Δ = 0, loss = log 2 = 0.693147. d loss_0 / dw = −σ(−0.346574) · 0.693147 = −0.414214 · 0.693147
    = −0.287112, row 1 contributes 0, so the mean's gradient is −0.143556: w grows while longer answers
    win. accuracy still reads r_c − r_r alone (0 → counted wrong)."""
    w = torch.tensor(0.5, requires_grad=True)
    offset = length_offset(w, t(math.log(2.0), 0.0))
    assert offset.tolist() == pytest.approx([-0.346574, 0.0], abs=1e-6)
    loss, m = pairwise_loss(t(0.0, 0.0), t(0.0, 0.0), margin=offset)
    assert loss.tolist() == pytest.approx([0.534800, 0.693147], abs=1e-6)
    loss.mean().backward()
    assert w.grad.item() == pytest.approx(-0.143556, abs=1e-6)
    assert m["accuracy"].item() == 0.0


def test_soft_labels():
    """p = 1 is the hard loss. p = 0.5 at Δ = 1.5: 0.5·(0.201413 + 1.701413) = 0.951413, and the
    same with the pair swapped (symmetric). p = 0.8: 0.8·0.201413 + 0.2·1.701413
    = 0.161130 + 0.340283 = 0.501413 (= softplus(−Δ) + (1 − p)Δ = 0.201413 + 0.3)."""
    rc, rr = t(2.0, 0.0, -3.0), t(0.5, 1.0, 4.0)
    hard, _ = pairwise_loss(rc, rr)
    soft, _ = pairwise_loss(rc, rr, target=1.0)
    torch.testing.assert_close(soft, hard)
    half, _ = pairwise_loss(t(2.0), t(0.5), target=0.5)
    swapped, _ = pairwise_loss(t(0.5), t(2.0), target=0.5)
    assert half.item() == pytest.approx(0.951413, abs=1e-6)
    assert swapped.item() == pytest.approx(0.951413, abs=1e-6)
    p8, _ = pairwise_loss(t(2.0, 2.0), t(0.5, 0.5), target=t(0.8, 1.0))
    assert p8.tolist() == pytest.approx([0.501413, 0.201413], abs=1e-6)
    with pytest.raises(ValueError):
        pairwise_loss(t(2.0), t(0.5), target=1.5)


def test_centering_term():
    """c = 0.01, r_c = 2, r_r = 0.5: 0.201413 + 0.01·(2.5)² = 0.201413 + 0.0625 = 0.263913.
    Over a batch, mean(loss) = mean(BT) + c·mean((r_c + r_r)²) as in Eisenstein et al. 2023:
    rows (2, 0.5) and (0, 1): (0.201413 + 1.313262)/2 + 0.01·3.625 = 0.757337 + 0.03625 = 0.793587."""
    loss, _ = pairwise_loss(t(2.0), t(0.5), center_coef=0.01)
    assert loss.item() == pytest.approx(0.263913, abs=1e-6)
    batch, _ = pairwise_loss(t(2.0, 0.0), t(0.5, 1.0), center_coef=0.01)
    assert batch.mean().item() == pytest.approx(0.793587, abs=1e-6)


def test_gradients():
    """d/dr_c softplus(r_r − r_c) = −σ(−Δ) = −(1 − σ(1.5)) = −0.182426; d/dr_r = +0.182426.
    Centering c = 0.01 adds 2c(r_c + r_r) = 0.02·2.5 = 0.05 to both: −0.132426 and 0.232426."""
    rc, rr = t(2.0).requires_grad_(), t(0.5).requires_grad_()
    loss, m = pairwise_loss(rc, rr)
    loss.sum().backward()
    assert rc.grad.item() == pytest.approx(-0.182426, abs=1e-6)
    assert rr.grad.item() == pytest.approx(0.182426, abs=1e-6)
    assert not any(v.requires_grad for v in m.values())
    rc.grad = rr.grad = None
    pairwise_loss(rc, rr, center_coef=0.01)[0].sum().backward()
    assert rc.grad.item() == pytest.approx(-0.132426, abs=1e-6)
    assert rr.grad.item() == pytest.approx(0.232426, abs=1e-6)


def test_stable_for_large_gaps():
    """Δ = −200: log(sigmoid(−200)) underflows to −inf in float32; logsigmoid gives 200."""
    loss, _ = pairwise_loss(t(0.0), t(200.0))
    assert loss.item() == pytest.approx(200.0)
    loss, _ = pairwise_loss(t(0.0), t(200.0), target=0.5)
    assert math.isfinite(loss.item())


def test_margin_from_ratings():
    """gaps (2, −1, 4, 6, NaN): off → 0; raw → (2, 0, 4, 6, 0);
    scaled (scale 1, max_gap 4) → (2/4, 0, 1, 1 [clipped at 4], 0) = (0.5, 0, 1, 1, 0);
    scale 3 → (1.5, 0, 3, 3, 0)."""
    gaps = t(2.0, -1.0, 4.0, 6.0, float("nan"))
    assert margin_from_ratings(gaps, "off").tolist() == [0.0] * 5
    assert margin_from_ratings(gaps, "raw").tolist() == [2.0, 0.0, 4.0, 6.0, 0.0]
    assert margin_from_ratings(gaps, "scaled").tolist() == [0.5, 0.0, 1.0, 1.0, 0.0]
    assert margin_from_ratings(gaps, "scaled", scale=3.0).tolist() == [1.5, 0.0, 3.0, 3.0, 0.0]
    assert margin_from_ratings(2, "scaled") == 0.5
    with pytest.raises(ValueError):
        margin_from_ratings(1.0, "large")


def test_ece_hand_case():
    """probs (0.9, 0.75, 0.3, 0.55), labels (1, 0, 0, 1), 5 bins of width 0.2, (lo, hi].
    predictions p > 0.5: (1, 1, 0, 1); confidences: (0.9, 0.75, 0.7, 0.55); correct: (1, 0, 1, 1).
      (0.8, 1.0]: {0.9}        conf 0.9,   acc 1,   |1 − 0.9|     = 0.1,   n = 1
      (0.6, 0.8]: {0.75, 0.7}  conf 0.725, acc 0.5, |0.5 − 0.725| = 0.225, n = 2
      (0.4, 0.6]: {0.55}       conf 0.55,  acc 1,   |1 − 0.55|    = 0.45,  n = 1
    ECE = (1·0.1 + 2·0.225 + 1·0.45) / 4 = 1.0 / 4 = 0.25."""
    ece, bins = expected_calibration_error(t(0.9, 0.75, 0.3, 0.55), torch.tensor([1, 0, 0, 1]), n_bins=5)
    assert ece == pytest.approx(0.25, abs=1e-6)
    assert [b["count"] for b in bins] == [1, 2, 1]
    assert [b["confidence"] for b in bins] == pytest.approx([0.55, 0.725, 0.9], abs=1e-6)
    assert [b["accuracy"] for b in bins] == pytest.approx([1.0, 0.5, 1.0])
    assert [b["lo"] for b in bins] == pytest.approx([0.4, 0.6, 0.8])
    assert [b["hi"] for b in bins] == pytest.approx([0.6, 0.8, 1.0])


def test_ece_perfectly_calibrated_is_zero():
    """Four predictions at p = 0.75 with 3 of 4 labels 1: confidence 0.75, accuracy 0.75 → ECE 0."""
    ece, bins = expected_calibration_error(t(0.75, 0.75, 0.75, 0.75), torch.tensor([1, 1, 1, 0]))
    assert ece == pytest.approx(0.0, abs=1e-9)
    assert len(bins) == 1 and bins[0]["count"] == 4
