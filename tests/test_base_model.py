"""The tiny embedded base model: tokenizer rules, chat template, pretraining, the saved directory."""
from __future__ import annotations

import json
import math
import random

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from demo.pretrain import build_model, lr_at, pack_documents, pretrain, save_model_dir, train_loop
from demo.tokenizer import EOT, IM_END, IM_START, PAD, render_chat, train_tokenizer

# 100 steps at a high lr: at 30 steps the model still loops on "$ $ $" instead of ending its
# turn, and the generation test needs a model that has learned to emit <|im_end|>. One thread:
# a 0.1M-param model gains nothing from more, and tests share the CPU with other jobs.
TINY = dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=176,
            seq_len=64, batch_size=8, max_steps=100, lr=5e-3, warmup_steps=10, threads=1,
            progress=False)
CHAT = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]


def make_texts(n_docs: int = 240, seed: int = 0) -> list[str]:
    """FAQ-like prose plus ChatML dialogues, so a short run learns to end an assistant turn."""
    r = random.Random(seed)
    items = ["lamp", "chair", "towel", "blanket", "table", "mug"]
    docs = []
    for _ in range(n_docs):
        item, days, price = r.choice(items), r.randint(1, 9), r.randint(5, 99)
        if r.random() < 0.5:
            docs.append(f"The {item} costs ${price}. Orders ship in {days} days. "
                        f"You can return the {item} within 30 days for a full refund.")
        else:
            docs.append(f"{IM_START}user\nHow much is the {item}?{IM_END}"
                        f"{IM_START}assistant\nThe {item} costs ${price}.{IM_END}")
    return docs


@pytest.fixture(scope="module")
def texts():
    return make_texts()


@pytest.fixture(scope="module")
def tok(texts):
    return train_tokenizer(texts, vocab_size=512)


@pytest.fixture(scope="module")
def trained(texts, tok, tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "base"
    log = out.parent / "log.jsonl"
    metrics = pretrain(texts, tok, out, log_path=log, **TINY)
    return out, metrics, log


# --- tokenizer ---------------------------------------------------------------------------------

@pytest.mark.parametrize("s", ["héllo wörld", "日本語のテキスト", "emoji 🙂👍🏽 ok", "  two leading spaces",
                               "tabs\tand\nnewlines\r\n", "", "e\u0301 combining", "naïve café — “quotes”",
                               "The lamp costs $12.", f"text with {IM_END} inside"])
def test_tokenizer_round_trips_any_unicode(tok, s):
    assert tok.decode(tok.encode(s)) == s


def test_special_tokens_are_single_ids(tok):
    ids = [tok.encode(t) for t in (EOT, IM_START, IM_END, PAD)]
    assert all(len(i) == 1 for i in ids)
    assert len({i[0] for i in ids}) == 4
    assert 256 + 4 <= len(tok) <= 512  # all bytes + specials; merges stop when pairs run out


def test_pad_eos_bos_rules(tok):
    assert tok.eos_token == IM_END and tok.pad_token == PAD
    assert tok.pad_token_id != tok.eos_token_id
    assert tok.bos_token is None and tok.bos_token_id is None
    assert tok.padding_side == "right"
    # Nothing is added around the text: no BOS, so no double BOS after the chat template.
    assert tok("Hi")["input_ids"] == tok.encode("Hi", add_special_tokens=False)


def test_tokenizer_is_deterministic(texts, tok):
    again = train_tokenizer(texts, vocab_size=512)
    assert again.backend_tokenizer.to_str() == tok.backend_tokenizer.to_str()


def test_chat_template_renders_exactly(tok):
    assert tok.apply_chat_template(CHAT, tokenize=False) == (
        "<|im_start|>user\nHi<|im_end|><|im_start|>assistant\nHello<|im_end|>")
    assert tok.apply_chat_template(CHAT[:1], tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>user\nHi<|im_end|><|im_start|>assistant\n")
    system = [{"role": "system", "content": "Be brief."}] + CHAT
    assert tok.apply_chat_template(system, tokenize=False).startswith(
        "<|im_start|>system\nBe brief.<|im_end|><|im_start|>user\n")


def test_corpus_chat_format_is_the_chat_template(tok):
    """The corpus writes its transcripts with render_chat: the very text the template renders."""
    chat = CHAT + [{"role": "user", "content": "And the mug?"}, {"role": "assistant", "content": "$12."}]
    for messages in (CHAT, chat, chat[:1]):
        assert render_chat(messages) == tok.apply_chat_template(messages, tokenize=False)


def test_chat_ids_end_with_eos(tok):
    ids = tok.apply_chat_template(CHAT, tokenize=True, return_dict=True)["input_ids"]
    assert ids[-1] == tok.eos_token_id
    assert ids.count(tok.convert_tokens_to_ids(IM_START)) == 2


def test_assistant_mask_covers_content_and_eos_only(tok):
    chat = CHAT + [{"role": "user", "content": "Price?"}, {"role": "assistant", "content": "$5 only."}]
    out = tok.apply_chat_template(chat, return_assistant_tokens_mask=True, return_dict=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert len(ids) == len(mask)
    masked = [i for i, m in zip(ids, mask) if m]
    assert tok.decode(masked) == "Hello<|im_end|>$5 only.<|im_end|>"
    # Each masked span ends on EOS and the role header before it is not masked.
    spans = "".join(str(m) for m in mask).split("0")
    assert [len(s) for s in spans if s] == [len(tok.encode("Hello")) + 1, len(tok.encode("$5 only.")) + 1]
    assert ids[-1] == tok.eos_token_id and mask[-1] == 1


# --- pretraining ---------------------------------------------------------------------------------

def test_pack_documents_joins_with_endoftext(tok):
    blocks = pack_documents(["a b", "c d"], tok, seq_len=4)
    eot = tok.convert_tokens_to_ids(EOT)
    flat = torch.cat([torch.tensor(tok.encode("a b") + [eot] + tok.encode("c d") + [eot])])
    assert blocks.shape[1] == 4
    assert torch.equal(blocks.flatten(), flat[: blocks.numel()])


def test_lr_schedule_warmup_then_cosine():
    kw = dict(lr=1e-3, warmup_steps=10, max_steps=110)
    assert lr_at(0, **kw) == pytest.approx(1e-4)
    assert lr_at(9, **kw) == pytest.approx(1e-3)
    assert lr_at(60, **kw) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert lr_at(110, **kw) == pytest.approx(1e-4)


def test_pretraining_learns(tok, trained):
    _, m, log = trained
    assert m["initial_train_loss"] == pytest.approx(math.log(len(tok)), abs=0.3)  # ~uniform at init
    assert m["final_train_loss_avg"] < m["initial_train_loss"] - 2.0
    assert m["val_loss"] < m["val_loss_initial"] - 2.0
    assert m["val_loss"] < m["unigram_entropy"]  # context is used, not just token frequencies
    assert m["tokens_seen"] == TINY["max_steps"] * 8 * 64
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert rows[0]["step"] == 1 and {"loss", "lr", "grad_norm", "tokens_per_s"} <= rows[0].keys()
    assert rows[-1]["val_loss"] == pytest.approx(m["val_loss"])


def test_short_steps_see_the_same_tokens_in_half_length_blocks(tok):
    """Sequence-length warm-up: the first `short_steps` steps take 2B blocks of T/2 tokens cut
    from the same (N, T) blocks, so tokens per step stay B*T; then (B, T) blocks."""
    model = build_model(tok, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                        intermediate_size=64, max_positions=64)
    seen = []
    model.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs["input_ids"].clone()),
                                    with_kwargs=True)
    blocks = torch.arange(40 * 16).remainder(len(tok)).view(40, 16)
    _, tokens, _ = train_loop(model, blocks, batch_size=4, max_steps=5, lr=1e-3, warmup_steps=1,
                              weight_decay=0.0, seed=0, short_steps=3, progress=False)
    assert [tuple(x.shape) for x in seen] == [(8, 8)] * 3 + [(4, 16)] * 2
    assert tokens == 5 * 4 * 16
    halves, wholes = {tuple(r) for r in blocks.reshape(-1, 8).tolist()}, {tuple(r) for r in blocks.tolist()}
    assert all(tuple(r) in halves for x in seen[:3] for r in x.tolist())  # cut from the same blocks
    assert all(tuple(r) in wholes for x in seen[3:] for r in x.tolist())
    seen.clear()  # an odd block length cannot be halved: every step is a full block
    train_loop(model, blocks[:, :15], batch_size=4, max_steps=2, lr=1e-3, warmup_steps=1,
               weight_decay=0.0, seed=0, short_steps=2, progress=False)
    assert [tuple(x.shape) for x in seen] == [(4, 15)] * 2


def test_pretraining_is_deterministic(texts, tok, trained, tmp_path):
    first_dir, first, _ = trained
    second = pretrain(texts, tok, tmp_path / "again", **TINY)
    assert second["final_train_loss"] == first["final_train_loss"]
    assert second["val_loss"] == first["val_loss"]
    a = AutoModelForCausalLM.from_pretrained(first_dir).state_dict()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "again").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_saved_dir_is_complete_and_atomic(trained):
    out, m, _ = trained
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
            "tokenizer_config.json", "metrics.json"} <= names
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left
    gen = json.loads((out / "generation_config.json").read_text())
    cfg = json.loads((out / "config.json").read_text())
    tok = AutoTokenizer.from_pretrained(out)
    assert gen["eos_token_id"] == tok.convert_tokens_to_ids(IM_END) == cfg["eos_token_id"]
    assert gen["pad_token_id"] == tok.pad_token_id and gen.get("do_sample", False) is False
    assert cfg.get("bos_token_id") is None and cfg["tie_word_embeddings"] is True
    assert 1_000 < m["n_params"] < 200_000


def test_save_replaces_existing_dir(tok, tmp_path):
    out = tmp_path / "base"
    out.mkdir()
    (out / "stale.txt").write_text("old run")
    model = build_model(tok, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                        intermediate_size=64, max_positions=64)
    save_model_dir(model, tok, out, {"n": 1}, progress=False)
    assert not (out / "stale.txt").exists() and (out / "model.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]


def test_crash_while_saving_keeps_the_old_dir(tok, tmp_path, monkeypatch):
    out = tmp_path / "base"
    out.mkdir()
    (out / "old.txt").write_text("previous model")
    model = build_model(tok, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                        intermediate_size=64, max_positions=64)

    def crash(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(type(tok), "save_pretrained", crash)
    with pytest.raises(OSError, match="disk full"):
        save_model_dir(model, tok, out, {}, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]  # no half-written temp dir
    assert [p.name for p in out.iterdir()] == ["old.txt"]


def test_saved_dir_loads_offline_with_identical_logits(tok, tmp_path, monkeypatch):
    import huggingface_hub.constants
    # What HF_HUB_OFFLINE=1 sets at import time: any attempt to reach the hub now raises.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    torch.manual_seed(1)
    model = build_model(tok, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                        intermediate_size=176, max_positions=128).eval()
    save_model_dir(model, tok, tmp_path / "m", {}, progress=False)

    loaded_tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    chat = [{"role": "user", "content": "How much is the lamp?"}]
    ids = loaded_tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt",
                                         return_dict=True)["input_ids"]
    assert ids.tolist() == tok.apply_chat_template(chat, add_generation_prompt=True, return_dict=True,
                                                   return_tensors="pt")["input_ids"].tolist()
    assert type(loaded).__name__ == "LlamaForCausalLM" and loaded.dtype == torch.float32
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()  # tied
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)


def test_loaded_model_reproduces_training_val_loss(texts, trained):
    from demo.pretrain import evaluate, split_documents
    out, m, _ = trained
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    _, val = split_documents(texts, 0.02, seed=0)
    loss = evaluate(model, pack_documents(val, tok, TINY["seq_len"]), TINY["batch_size"])
    assert loss == pytest.approx(m["val_loss"], abs=1e-5)


def test_chat_generation_stops_at_im_end(trained):
    out, _, _ = trained
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tok.padding_side = "left"
    enc = tok.apply_chat_template([{"role": "user", "content": "How much is the mug?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    max_new = 24
    with torch.no_grad():  # eos comes from the saved generation_config, not from this call
        gen = model.generate(**enc, max_new_tokens=max_new)[0, enc["input_ids"].shape[1]:].tolist()
    assert gen[-1] == tok.eos_token_id and tok.eos_token_id not in gen[:-1]
    assert len(gen) < max_new, tok.decode(gen)
    assert tok.decode(gen).endswith(IM_END)


def test_tokenizer_passes_project_preflight(tok):
    from core.models import preflight
    preflight(tok)  # raises with every broken rule listed


def test_base_stage_refuses_a_share_outside_0_1_before_reading_anything(tmp_path):
    from core.config import UserError, load_config
    from demo.config import BaseConfig
    from demo.base import main

    cfg = load_config(BaseConfig, None, {"run": str(tmp_path / "missing-run"), "short_seq_share": 1.5})
    with pytest.raises(UserError, match="short_seq_share must be between 0 and 1, got 1.5"):
        main(cfg)
