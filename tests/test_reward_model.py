"""Reward model: pooling under padding, text formats, final-reward arithmetic, LoRA training touches
only the adapter and the score head, save/reload and batched scoring."""
import json

import pytest
import torch
from safetensors.torch import load_file

from core.config import load_config
from core.models import load_tokenizer
from core.config import RewardConfig
from reward.model import (build_reward_model, collate, combine_reward, default_backbone, encode,
                          lora_seq_cls_config, save_reward_model)

CPU = torch.device("cpu")
@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run much faster on one thread when the CPU is shared (OpenMP threads wait on each
    other under contention: 0.8 s vs 19 s for the same 6-step run); restored for later modules."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

# different lengths, so the first pair is padded in a batch with the others
TEXTS = [("When do you open on Monday?", "We open at 9am."),
         ("Hi, what is the return window for a cast iron skillet? Thanks!",
          "Happy to help! You can return it within 30 days for a full refund. Anything else I can help with?"),
         ("Do you ship to 94107?", "Yes, we ship there in 3 business days.")]


@pytest.fixture(scope="module")
def minilm():
    path = default_backbone()
    tok = load_tokenizer(path)
    torch.manual_seed(0)
    return build_reward_model(path, tok, CPU, aspect_heads=True).eval(), tok


def _lora_rm(tiny_base, seed=0, r=4):
    tok = load_tokenizer(tiny_base)
    torch.manual_seed(seed)
    rm = build_reward_model(tiny_base, tok, CPU, lora_seq_cls_config(load_config(RewardConfig, None, {"lora_r": r})),
                            aspect_heads=True)
    return rm, tok


def _assert_padding_invariant(rm, tok):
    enc = [encode(tok, rm.kind, p, r, 128) for p, r in TEXTS]
    assert len({len(e["input_ids"]) for e in enc}) == len(enc)
    with torch.no_grad():
        alone = rm(**collate(enc[:1], tok.pad_token_id))
        right = rm(**collate(enc, tok.pad_token_id, "right"))
        left = rm(**collate(enc, tok.pad_token_id, "left"))
        singles = [rm(**collate([e], tok.pad_token_id)) for e in enc]
    assert collate(enc, tok.pad_token_id, "left")["attention_mask"][0, 0] == 0  # really left-padded
    for batch in (right, left):
        torch.testing.assert_close(batch[0][:1], alone[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(batch[1][:1], alone[1], atol=1e-5, rtol=0)
        torch.testing.assert_close(batch[0], torch.cat([s[0] for s in singles]), atol=1e-5, rtol=0)
    assert right[0].std() > 0  # the texts do get different scores


def test_encoder_pooling_same_score_alone_right_and_left_padded(minilm):
    rm, tok = minilm
    assert rm.kind == "encoder"
    _assert_padding_invariant(rm, tok)


def test_decoder_pooling_same_score_alone_right_and_left_padded(tiny_base):
    rm, tok = _lora_rm(tiny_base)
    assert rm.kind == "decoder"
    with torch.no_grad():  # LoRA B starts at 0: make the adapter matter for this check
        for n, p in rm.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.5)
    _assert_padding_invariant(rm.eval(), tok)


def test_encoder_text_pair_truncates_the_prompt_first(minilm):
    _, tok = minilm
    prompt = " ".join(f"word{i}" for i in range(200)) + " final question"
    enc = encode(tok, "encoder", prompt, "the answer is here", 32)
    text = tok.decode(enc["input_ids"])
    assert len(enc["input_ids"]) == 32
    assert text.endswith("final question [SEP] the answer is here [SEP]")  # prompt's start cut, response whole
    assert set(enc["token_type_ids"][-5:]) == {1} and enc["token_type_ids"][-6] == 0
    long = encode(tok, "encoder", "q?", "long " * 300, 32)  # even an overlong response fits
    assert len(long["input_ids"]) <= 32


def test_decoder_uses_its_chat_template(tiny_base):
    tok = load_tokenizer(tiny_base)
    chat = [{"role": "user", "content": TEXTS[0][0]}, {"role": "assistant", "content": TEXTS[0][1]}]
    ids = tok.apply_chat_template(chat, tokenize=True, return_dict=False)
    assert encode(tok, "decoder", *TEXTS[0], 512)["input_ids"] == list(ids)
    assert encode(tok, "decoder", *TEXTS[0], 8)["input_ids"] == list(ids)[-8:]  # keeps the response's end


def test_combine_reward_hand_computed():
    """pairwise r = (0.5, -1); aspects rows (quality, relevance, helpfulness, harm, correctness, realism,
    comprehensibility) = (5,3,4,1,5,3,3) and (2,3,2,5,1,3,3); weights quality 1, helpfulness 1,
    harmfulness -2, correctness 1:
      aspects: row 1 = (5-3) + (4-3) - 2(1-3) + (5-3) = 2 + 1 + 4 + 2 = 9;
               row 2 = (2-3) + (2-3) - 2(5-3) + (1-3) = -1 - 1 - 4 - 2 = -8.
      gated (threshold 3, scale 1): row 1 harmless → r = 0.5; row 2 harm 5 > 3 → -(5 - 1) = -4."""
    r = torch.tensor([0.5, -1.0])
    a = torch.tensor([[5, 3, 4, 1, 5, 3, 3], [2, 3, 2, 5, 1, 3, 3]], dtype=torch.float32)
    w = {"quality": 1, "helpfulness": 1, "harmfulness": -2, "correctness": 1}
    assert combine_reward(r, a, "pairwise") is r
    torch.testing.assert_close(combine_reward(r, a, "aspects", w), torch.tensor([9.0, -8.0]))
    torch.testing.assert_close(combine_reward(r, a, "gated", w, 3.0, 1.0), torch.tensor([0.5, -4.0]))
    with pytest.raises(ValueError, match="aspect heads"):
        combine_reward(r, None, "gated")


def test_lora_training_changes_adapter_and_head_only(tiny_base):
    from core.device import resolve_device
    from reward.train import encode_rows, train_loop

    rm, tok = _lora_rm(tiny_base)
    before = {n: p.detach().clone() for n, p in rm.named_parameters()}
    rows = [{"prompt": p, "chosen": c, "rejected": "Please check our website.", "margin": 0.5, "agreement": 1.0,
             "aspects_chosen": {"quality": 5}, "aspects_rejected": {"quality": 1}} for p, c in TEXTS] * 2
    items = encode_rows(rows, tok, rm.kind, 64)
    cfg = load_config(RewardConfig, None, {"learning_rate": 1e-2, "batch_size": 3, "warmup_ratio": 0.0})
    train_loop(rm, items, items, cfg, resolve_device("cpu", apply=False), tok.pad_token_id, 3, progress=False)
    changed = {n for n, p in rm.named_parameters() if not torch.equal(p, before[n])}
    trainable = {n for n, p in rm.named_parameters() if p.requires_grad}
    assert any("lora_B" in n for n in changed) and any("lora_A" in n for n in changed)
    assert any("score.modules_to_save" in n for n in changed)
    assert any(n.startswith("aspect_head") for n in changed)
    assert changed <= trainable  # frozen weights, including the original score head copy, untouched
    assert any("score.original_module" in n for n in before) and not any("original_module" in n for n in changed)
    assert len(before) - len(trainable) > 10


def test_lora_reward_model_saved_and_reloaded_scores_identically(tiny_base, tmp_path):
    from reward import load_scorer
    from reward.score import score_file

    rm, tok = _lora_rm(tiny_base, seed=1)
    with torch.no_grad():
        for n, p in rm.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.3)
    rm.eval()
    out = tmp_path / "run" / "reward"
    save_reward_model(out, rm, tok, tiny_base, max_length=128)
    saved = load_file(str(out / "adapter_model.safetensors"))
    assert any("score" in k for k in saved) and any("lora_B" in k for k in saved)  # head saved with the adapter
    assert json.loads((out / "reward_model.json").read_text())["lora"] is True

    prompts, responses = [p for p, _ in TEXTS], [r for _, r in TEXTS]
    with torch.no_grad():
        expected = [rm(**collate([encode(tok, "decoder", p, r, 128)], tok.pad_token_id))[0].item()
                    for p, r in TEXTS]
    scorer = load_scorer(tmp_path / "run", device="cpu")  # the run directory finds reward/
    assert scorer.score(prompts, responses) == pytest.approx(expected, abs=1e-6)

    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"prompt": p, "response": r, "id": i}) + "\n" for i, (p, r) in enumerate(TEXTS)))
    scored = [json.loads(x) for x in score_file(tmp_path / "run", rows).read_text().splitlines()]
    assert [s["id"] for s in scored] == [0, 1, 2]
    assert [s["reward"] for s in scored] == pytest.approx(expected, abs=1e-6)
    # the command, with --threads as every stage takes it
    from reward.score import cli_score

    threads = torch.get_num_threads()
    try:
        assert cli_score(["--run", str(tmp_path / "run"), "--file", str(rows), "--out", str(tmp_path / "s.jsonl"),
                          "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    again = [json.loads(x)["reward"] for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert again == pytest.approx(expected, abs=1e-6)


def test_scorer_batched_equals_one_by_one(minilm):
    from reward.score import Scorer

    rm, tok = minilm  # (saving and reloading: the LoRA test above)
    scorer = Scorer(rm, tok, {"max_length": 64}, CPU, batch_size=4)
    prompts = [p for p, _ in TEXTS] * 3 + ["One letter?", "Empty answer?"]
    responses = [r for _, r in TEXTS] + ["Short.", "A much longer answer " * 5, "Mid length answer here."] * 2 + [
        "x", ""]
    batched = scorer.score(prompts, responses)
    single = [scorer.score([p], [r])[0] for p, r in zip(prompts, responses)]
    assert batched == pytest.approx(single, abs=1e-5)
    assert len(set(round(x, 6) for x in batched)) > 5
    assert scorer.score([], []) == []
