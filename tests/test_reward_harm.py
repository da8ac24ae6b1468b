"""The harmfulness head as a safety classifier: AUC and the gate threshold, on hand-computed
score lists, and the reward stage reporting them and gating with the held-out threshold."""
import json
import random

import pytest
import torch

from reward.harm import auc, heldout_harm_metrics, youden_threshold


def test_auc_counts_pairs_and_ties_half():
    # positives 0.35, 0.8 vs negatives 0.1, 0.4: pairs won (0.35>0.1), (0.8>0.1), (0.8>0.4) = 3 of 4
    assert auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    # positives 1, 2 vs negative 1: a tie (1/2) and a win (1) → 0.75
    assert auc([1.0, 1.0, 2.0], [True, False, True]) == 0.75
    assert auc([3.0, 2.0, 1.0], [True, False, False]) == 1.0 and auc([1.0, 2.0], [True, False]) == 0.0
    assert auc([1.0, 2.0], [True, True]) is None
    with pytest.raises(ValueError):
        auc([1.0], [True, False])


def test_youden_threshold_uses_the_gates_rule():
    """Cuts between 0.1, 0.35, 0.4, 0.8: 0.225 → TPR 1 - FPR 1/2; 0.375 → 1/2 - 1/2; 0.6 → 1/2 - 0.
    0.225 and 0.6 tie at J = 1/2: the lower one."""
    assert youden_threshold([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == pytest.approx(0.225)
    assert youden_threshold([1.0, 2.0, 4.5, 5.0], [False, False, True, True]) == pytest.approx(3.25)
    assert youden_threshold([1.0, 2.0], [False, False]) is None


def test_heldout_harm_metrics_compare_within_harmful_requests():
    """Prompt p got a harmful answer (rated 5) and a refusal (1); q two benign answers; r's answer is
    unrated. On p: 2.5 > 2.0 → AUC 1. Over all rated: 2.5 against 2.0, 3.0, 1.0 → 2/3.
    Cuts 1.5, 2.25, 2.75: J = 1 - 2/3, 1 - 1/3, 0 - 1/3 → 2.25."""
    m = heldout_harm_metrics(["p", "p", "q", "q", "r"], [5.0, 1.0, 1.0, 1.0, None], [2.5, 2.0, 3.0, 1.0, 5.0])
    assert m == {"harm_auc": 1.0, "harm_auc_n": [1, 1], "harm_auc_all": 0.6667, "harm_auc_all_n": [1, 3],
                 "gate_threshold_heldout": 2.25}
    none = heldout_harm_metrics(["q"], [1.0], [2.0])
    assert none["harm_auc"] is None and none["gate_threshold_heldout"] is None


def harm_pairs(n, seed=0):
    """Harmful requests with a refusal (harmfulness 1) chosen over harmful help (5), and benign
    questions with the best answer chosen (both rated harmless)."""
    from demo import domain

    rng, rows = random.Random(seed), []
    for i in range(n):
        harmful = i % 2 == 0
        intent = (domain.HARMFUL if harmful else domain.BENIGN)[i % 10]
        t = rng.randrange(len(intent.templates))
        slots = domain.sample_slots(intent, rng, intent.templates[t])
        good, bad = ("refusal", "harmful_compliance") if harmful else ("best", "generic")
        rows.append({"prompt": domain.render_prompt(intent, t, slots, rng),
                     "chosen": domain.render(intent, slots, good, rng),
                     "rejected": domain.render(intent, slots, bad, rng),
                     "aspects_chosen": {"quality": 4.0, "harmfulness": 1.0},
                     "aspects_rejected": {"quality": 2.0, "harmfulness": 5.0 if harmful else 1.0}})
    return rows


def _train_harm(tiny_base, tmp_path, n_pairs: int, steps: int, **kw) -> dict:
    from core.config import RewardConfig, load_config
    from reward.train import main

    tmp_path.mkdir(exist_ok=True)
    data = tmp_path / "preferences.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in harm_pairs(n_pairs)))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(load_config(RewardConfig, None, dict(
            run=str(tmp_path), model=str(tiny_base), data=str(data), out=str(tmp_path / "reward"), max_steps=steps,
            eval_steps=steps, batch_size=8, lora_r=4, lora_alpha=8, learning_rate=1e-2, max_length=96,
            ablations=False, threads=1, early_stopping_patience=0) | kw))
    finally:
        torch.set_num_threads(n)


def test_trained_harm_head_separates_harmful_help_from_refusals(tiny_base, tmp_path):
    """Trained on ratings (harmful help 5, refusals 1), the head ranks held-out harmful help above
    the held-out refusals (15 of each here): AUC 0.99-1.0 after 200 steps, against 0.58 for the
    same seeded head left untrained. Over all held-out answers (benign ones included, which the
    ratings tell apart from harmful help less sharply) 0.75-0.87 against 0.47. The base is the
    session's tiny model, whose weights depend on the thread count it was built with: hence ranges."""
    trained = _train_harm(tiny_base, tmp_path / "a", 160, 200)
    untrained = _train_harm(tiny_base, tmp_path / "b", 160, 1, learning_rate=1e-9)
    assert trained["harm_auc_n"] == untrained["harm_auc_n"] and trained["harm_auc_n"][0] >= 10
    assert trained["harm_auc"] >= 0.9 and untrained["harm_auc"] < 0.7
    assert trained["harm_auc_all"] >= untrained["harm_auc_all"] + 0.15


def test_gated_reward_takes_the_heldout_threshold(tiny_base, tmp_path):
    out = tmp_path / "reward"
    m = _train_harm(tiny_base, tmp_path, 40, 4, reward_type="gated", gate_threshold_from_heldout=True)
    val = [json.loads(x) for x in (out / "val.jsonl").read_text().splitlines()]
    n_harmful = sum(r["aspects_rejected"]["harmfulness"] == 5.0 for r in val)
    # on harmful requests: one harmful answer and one refusal per pair; overall: 2 responses per pair
    assert m["harm_auc_n"] == [n_harmful, n_harmful] and m["harm_auc_all_n"] == [n_harmful, 2 * len(val) - n_harmful]
    assert 0.0 <= m["harm_auc"] <= 1.0 and 0.0 <= m["harm_auc_all"] <= 1.0
    assert m["gate_threshold"] == m["gate_threshold_heldout"] is not None
    assert json.loads((out / "reward_model.json").read_text())["gate_threshold"] == m["gate_threshold"]


def test_heldout_gate_needs_the_gated_reward():
    from core.config import ConfigError, RewardConfig
    from reward.train import check_config

    with pytest.raises(ConfigError, match="gate_threshold_from_heldout.*not pairwise"):
        check_config(RewardConfig(reward_type="pairwise", gate_threshold_from_heldout=True))
    check_config(RewardConfig(reward_type="gated", gate_threshold_from_heldout=True))
