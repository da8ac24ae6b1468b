"""Reward stage end to end: run directory, data errors, exact resume, held-out split, and a short
training of the default MiniLM backbone on easy demo pairs. (The loss itself: test_reward_loss.py.)"""
import json
import random
from pathlib import Path

import pytest
import torch

from core.config import load_config
from core.config import RewardConfig


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run much faster on one thread when the CPU is shared (OpenMP threads wait on each
    other under contention: 0.8 s vs 19 s for the same 6-step run); restored for later modules."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def demo_questions(n, seed=0):
    """n demo questions, one benign intent after another: (intent, template, slots, prompt, rng)."""
    from demo import domain

    rng = random.Random(seed)
    for i in range(n):
        intent = domain.BENIGN[i % len(domain.BENIGN)]
        t = rng.randrange(len(intent.templates))
        slots = domain.sample_slots(intent, rng, intent.templates[t])
        yield intent, slots, domain.render_prompt(intent, t, slots, rng), rng


def easy_pairs(n, seed=0):
    """Demo questions with the 'best' answer chosen over a 'generic' or 'wrong_fact' one."""
    from demo import domain

    return [{"prompt": prompt, "chosen": domain.render(intent, slots, "best", rng),
             "rejected": domain.render(intent, slots, rng.choice(["generic", "wrong_fact"]), rng),
             "margin": rng.choice([0.5, 1.0]), "agreement": rng.choice([1.0, 2 / 3]), "n_votes": 3,
             "aspects_chosen": {"quality": 4.7, "harmfulness": 1.0},
             "aspects_rejected": {"quality": 1.7, "harmfulness": 1.0}}
            for intent, slots, prompt, rng in demo_questions(n, seed)]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("pref") / "preferences.jsonl", easy_pairs(40))


def _cfg(tiny_base, data, out, **kw):
    base = dict(run=str(out.parent), model=str(tiny_base), data=str(data), out=str(out), max_steps=6,
                eval_steps=2, logging_steps=1, batch_size=8, lora_r=4, lora_alpha=8, learning_rate=1e-2,
                max_length=96, ablations=False, threads=1, early_stopping_patience=0, save_total_limit=5)
    base.update(kw)
    return load_config(RewardConfig, None, base)


def _losses(out):
    return [(r["step"], round(r["loss"], 6)) for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())
            if "loss" in r]


def test_decoder_lora_run_writes_the_reward_directory(tiny_base, pairs_file, tmp_path, capsys):
    from demo.judge import reward_gold
    from reward.train import main

    out = tmp_path / "reward"
    m = main(_cfg(tiny_base, pairs_file, out, ablations=True, ablation_steps=1), gold=reward_gold())
    # the closing line puts the reward model's taste for length beside the gold judge's
    assert (f"reward-length correlation {m['reward_length_corr']} (gold's {m['gold_length_corr']})"
            in capsys.readouterr().out)
    for f in ("adapter_config.json", "adapter_model.safetensors", "aspect_head.safetensors", "reward_model.json",
              "tokenizer.json", "config.yaml", "metrics.json", "log.jsonl", "README.md", "reliability.png",
              "train.jsonl", "val.jsonl"):
        assert (out / f).exists(), f
    assert m["kind"] == "decoder" and m["lora"] and m["steps"] == 6
    for key in ("heldout_accuracy", "heldout_accuracy_gold", "ece", "reward_length_corr", "labels_agree_with_gold"):
        assert isinstance(m[key], float), key
    abl = m["ablations"]
    assert {"reference", "margin_off", "soft_labels_off"} <= set(abl)
    assert all(isinstance(abl[k]["heldout_accuracy"], float) for k in ("reference", "margin_off", "soft_labels_off"))
    assert json.loads((out / "metrics.json").read_text())["ablations"]["margin_off"]["margin"] == "off"
    assert isinstance(abl["reference"]["heldout_accuracy_gold"], float)
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "sha256" in card and "heldout_accuracy" in card
    from core.runcard import read_card_header

    header = read_card_header(out)  # LoRA + score head: a PEFT adapter
    assert header["library_name"] == "peft" and header["base_model"] == str(Path(tiny_base).resolve())
    assert header["datasets"] == [str(pairs_file.resolve())]
    assert {"rlhf-loop", "reward", "reward-model", "lora"} <= set(header["tags"])
    assert (out / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    # whole prompts are held out
    train_p = {json.loads(x)["prompt"] for x in (out / "train.jsonl").read_text().splitlines()}
    val_p = {json.loads(x)["prompt"] for x in (out / "val.jsonl").read_text().splitlines()}
    assert val_p and not train_p & val_p


@pytest.mark.parametrize("bad_row, expected", [
    ({"prompt": "Are you open on Sunday?", "chosen": "We are closed on Sundays."}, r"bad\.jsonl:2: rejected: missing"),
    ({"prompt": "Are you open on Sunday?", "chosen": "  ", "rejected": "Yes."}, r"bad\.jsonl:2: chosen: empty"),
])
def test_bad_preference_file_stops_before_training(tiny_base, tmp_path, bad_row, expected):
    from core.records import DataError
    from reward.train import main

    good = easy_pairs(1)[0]
    bad = _write(tmp_path / "bad.jsonl", [good, bad_row, good])
    with pytest.raises(DataError, match=expected):
        main(_cfg(tiny_base, bad, tmp_path / "reward"))
    assert not (tmp_path / "reward" / "adapter_model.safetensors").exists()
    assert not (tmp_path / "reward" / "log.jsonl").exists()


class _Crash(Exception):
    pass


def test_without_a_gold_judge_no_gold_numbers(tiny_base, pairs_file, tmp_path):
    from reward.train import main

    m = main(_cfg(tiny_base, pairs_file, tmp_path / "reward", max_steps=2))
    assert isinstance(m["heldout_accuracy"], float)
    assert not [k for k in m if "gold" in k]


def test_resume_reproduces_uninterrupted_losses(tiny_base, pairs_file, tmp_path):
    from reward.train import main

    full = tmp_path / "full" / "reward"
    main(_cfg(tiny_base, pairs_file, full))

    def crash_at_5(step, row):  # after checkpoint step-4, half-way to the next
        if step == 5:
            raise _Crash()

    part = tmp_path / "part" / "reward"
    with pytest.raises(_Crash):
        main(_cfg(tiny_base, pairs_file, part), on_step=crash_at_5)
    assert (part / "checkpoints" / "step-000004.pt").exists()
    main(_cfg(tiny_base, pairs_file, part, resume=True))
    assert [s for s, _ in _losses(part)] == [1, 2, 3, 4, 5, 6]
    assert _losses(part) == _losses(full)
    assert json.loads((part / "metrics.json").read_text())["heldout_accuracy"] == \
        json.loads((full / "metrics.json").read_text())["heldout_accuracy"]


def test_split_never_puts_a_prompt_on_both_sides(tmp_path):
    from core.prompts import prompt_key
    from reward.train import load_split

    rows = [{"prompt": f"question {i % 10}" + (" " if i % 3 else ""), "chosen": "a", "rejected": "b"}
            for i in range(50)]
    _, train, val = load_split(_write(tmp_path / "p.jsonl", rows), RewardConfig(val_fraction=0.2))
    assert len(train) + len(val) == 50 and val and len(val) % 5 == 0  # 10 prompts, 5 pairs each
    assert not {prompt_key(r["prompt"]) for r in train} & {prompt_key(r["prompt"]) for r in val}


def test_minilm_learns_easy_pairs_above_chance(tmp_path):
    """The default backbone (MiniLM-L6, full fine-tuning), 10 steps of 4 pairs: best answers beat
    generic or wrong ones on held-out prompts (16 pairs; chance is 0.5)."""
    from demo.judge import reward_gold
    from reward.train import main

    data = _write(tmp_path / "easy.jsonl", easy_pairs(64))
    m = main(load_config(RewardConfig, None, dict(
        run=str(tmp_path), data=str(data), max_steps=10, eval_steps=100, batch_size=4, learning_rate=5e-4,
        max_length=40, val_fraction=0.25, early_stopping_patience=0, ablations=False, aspect_heads=False, seed=0,
        threads=1)), gold=reward_gold())
    from core.split import split_by_prompt

    assert m["kind"] == "encoder" and not m["lora"]
    assert m["heldout_pairs"] == len(split_by_prompt(easy_pairs(64), 0.25, 0)[1]) >= 8
    assert m["heldout_accuracy"] > 0.75
    assert m["heldout_accuracy_gold"] > 0.75


def length_pairs(n, seed=0):
    """Two answers of one kind (both 'best' or both 'polite'), the longer one chosen: only length
    explains these preferences."""
    from demo import domain

    rows = []
    for intent, slots, prompt, rng in demo_questions(n, seed):
        kind = rng.choice(["best", "polite"])
        a, b = domain.render(intent, slots, kind, rng), domain.render(intent, slots, kind, rng)
        b = b + " " + b if len(a) == len(b) else b
        long, short = (a, b) if len(a) > len(b) else (b, a)
        rows.append({"prompt": prompt, "chosen": long, "rejected": short})
    return rows


def test_length_covariate_takes_up_a_preference_for_length(tiny_base, tmp_path):
    """Preferences that only length explains: with length_covariate the fitted coefficient grows,
    step after step in the log; it is reported, never saved with the model."""
    from reward.model import load_reward_model
    from reward.train import main

    data = _write(tmp_path / "long.jsonl", length_pairs(48))
    m = main(_cfg(tiny_base, data, tmp_path / "rm", max_steps=12, eval_steps=100, aspect_heads=False,
                  length_covariate=True))
    assert m["length_coef"] > 0.3
    coefs = [r["length_coef"] for r in map(json.loads, (tmp_path / "rm" / "log.jsonl").read_text().splitlines())
             if "length_coef" in r]
    assert len(coefs) == 12 and coefs[0] < coefs[5] < coefs[-1]
    rm, _, _ = load_reward_model(tmp_path / "rm")
    assert not hasattr(rm, "length_coef")


def test_gold_agreement_leaves_near_ties_out_and_reports_them():
    """Pairs 0 and 4 the RM orders as gold does, pair 2 against it, pair 1 is a near-tie
    (gold +0.01, under GOLD_TIE) it orders against gold, pair 3 has no gold score.
    Decisive pairs 0, 2, 4: 2 of 3 right; every non-tie pair 0, 1, 2, 4: 2 of 4."""
    import torch

    from eval.gold import GOLD_TIE, gold_agreement

    assert GOLD_TIE == 0.15
    m = gold_agreement(torch.tensor([1.0, -0.5, 2.0, 0.3, -1.0]), [0.5, 0.01, -1.0, None, -0.2])
    assert m["gold_pairs"] == 3 and m["gold_near_ties"] == 1
    assert m["heldout_accuracy_gold"] == 0.6667 and m["heldout_accuracy_gold_all"] == 0.5
    assert m["labels_agree_with_gold"] == 0.3333  # only pair 0's label (chosen) is gold's pick
    assert gold_agreement(torch.tensor([1.0]), [None]) == {"gold_pairs": 0, "gold_near_ties": 0}


def test_round_weights_hand_values():
    """recent_weight 3 on rounds [1, 1, 2, 2, None→1]: raw weights 1, 1, 3, 3, 1 (mean 1.8), scaled
    to mean 1; one round, or weight 1, leaves every pair at 1."""
    from reward.train import round_weights

    rows = [{"round": 1}, {"round": 1}, {"round": 2}, {"round": 2}, {"round": None}]
    w = round_weights(rows, 3.0)
    assert w == pytest.approx([1 / 1.8, 1 / 1.8, 3 / 1.8, 3 / 1.8, 1 / 1.8])
    assert sum(w) == pytest.approx(len(rows))
    assert round_weights(rows, 1.0) == [1.0] * 5
    assert round_weights([{"round": 2}, {"round": 2}], 3.0) == [1.0, 1.0]


def test_pair_weights_scale_each_pairs_loss(tiny_base):
    """batch_loss with weights (0.5, 1.5) is the weighted mean of the two pairs' losses alone."""
    from core.device import policy_from_config
    from core.models import load_tokenizer
    from reward.train import batch_loss, encode_rows, make_batch, new_model

    cfg = RewardConfig(model=str(tiny_base), lora_r=4, lora_alpha=8, threads=1, aspect_heads=False)
    tok = load_tokenizer(tiny_base)
    rm = new_model(cfg, Path(tiny_base), tok, policy_from_config(cfg), aspect_heads=False).eval()
    rows = [{**r, "margin": 0.0, "agreement": 1.0} for r in easy_pairs(2)]
    items = encode_rows(rows, tok, rm.kind, 96, weights=[0.5, 1.5])
    with torch.no_grad():
        both, _ = batch_loss(rm, make_batch(items, tok.pad_token_id), cfg)
        alone = [batch_loss(rm, make_batch([{**it, "weight": 1.0}], tok.pad_token_id), cfg)[0] for it in items]
    assert alone[0] != pytest.approx(alone[1].item())
    assert both.item() == pytest.approx((0.5 * alone[0] + 1.5 * alone[1]).item() / 2, rel=1e-5)


def _scores(path, rows):
    from reward.score import load_scorer

    scorer = load_scorer(path, device="cpu")
    return torch.tensor(scorer.score([r["prompt"] for r in rows], [r["chosen"] for r in rows]))


@pytest.mark.parametrize("lora", [True, False])
def test_init_continues_the_saved_reward_model(tiny_base, pairs_file, tmp_path, lora):
    """`init`: at learning rate 0 the result scores exactly as the model it started from (not as a
    new head would); trained on, it starts from that model's loss, not a new head's."""
    from reward.train import main

    rows = easy_pairs(6, seed=1)
    first = tmp_path / "first"
    main(_cfg(tiny_base, pairs_file, first, lora=lora))
    frozen = tmp_path / "frozen"
    main(_cfg(tiny_base, pairs_file, frozen, lora=lora, init=str(first), max_steps=2, learning_rate=0.0,
              head_learning_rate=0.0))
    assert torch.equal(_scores(frozen, rows), _scores(first, rows))
    anew = tmp_path / "anew"
    main(_cfg(tiny_base, pairs_file, anew, lora=lora, max_steps=2, learning_rate=0.0, head_learning_rate=0.0))
    assert not torch.allclose(_scores(anew, rows), _scores(first, rows))
    on = tmp_path / "on"
    main(_cfg(tiny_base, pairs_file, on, lora=lora, init=str(first), max_steps=2))
    assert not torch.equal(_scores(on, rows), _scores(first, rows))
    assert _losses(on)[0][1] < _losses(first)[0][1]  # it starts where `first` ended, not from scratch


def test_init_must_be_a_reward_model_of_the_same_backbone(tiny_base, pairs_file, tmp_path):
    from core.config import ConfigError, MissingFileError
    from reward.train import main

    with pytest.raises(MissingFileError, match=r"key 'init': .*nowhere is not a reward model directory"):
        main(_cfg(tiny_base, pairs_file, tmp_path / "rm", init=str(tmp_path / "nowhere")))
    other = tmp_path / "other"
    other.mkdir()
    (other / "reward_model.json").write_text(json.dumps({"base_model": str(tmp_path / "another_model")}))
    with pytest.raises(ConfigError, match=r"key 'init': .*other was trained from .*another_model, not from"):
        main(_cfg(tiny_base, pairs_file, tmp_path / "rm", init=str(other)))
    assert not (tmp_path / "rm" / "log.jsonl").exists()


def test_recent_weight_reaches_the_training_loss(tiny_base, tmp_path):
    """The stage passes recent_weight to the loss: pairs of two rounds train differently at 3 than at
    1; pairs of one round train exactly alike (every weight is 1)."""
    from reward.train import main

    rows = easy_pairs(40)
    two = _write(tmp_path / "two.jsonl", [{**r, "round": 1 + i % 2} for i, r in enumerate(rows)])
    one = _write(tmp_path / "one.jsonl", [{**r, "round": 1} for r in rows])
    for name, data, w in (("two1", two, 1.0), ("two3", two, 3.0), ("one1", one, 1.0), ("one3", one, 3.0)):
        main(_cfg(tiny_base, data, tmp_path / name / "reward", max_steps=2, recent_weight=w))
    assert _losses(tmp_path / "two1" / "reward") != _losses(tmp_path / "two3" / "reward")
    assert _losses(tmp_path / "one1" / "reward") == _losses(tmp_path / "one3" / "reward")
