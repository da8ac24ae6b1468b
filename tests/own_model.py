"""A researcher's own model and TRL-format data, built locally: a tiny random Qwen2 with a
Qwen-style tokenizer (no pad token, EOS `<|endoftext|>`, a ChatML template that ends turns with
`<|im_end|>` and a newline after it), conversational SFT rows with a system prompt, preference
pairs with an implicit prompt, and conversational prompt-only rows."""
from __future__ import annotations

import json
from pathlib import Path

SYSTEM = "You are the help desk of a small bakery."
QWEN_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
ITEMS = ["bread", "rolls", "cake", "pie", "cookies", "muffins", "bagels", "scones", "tarts", "buns"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


def exchanges() -> list[tuple[str, str, str]]:
    """(question, good answer, bad answer)."""
    out = []
    for i, item in enumerate(ITEMS):
        for d in DAYS:
            out.append((f"Do you bake {item} on {d}?", f"Yes, fresh {item} every {d} from 7am.",
                        f"No idea, ask someone else about {item}."))
    return out


def build_qwen(out: Path) -> Path:
    """Save a tiny random Qwen2 and its tokenizer to `out`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    texts = [f"{q} {a} {b}" for q, a, b in exchanges()] + [SYSTEM]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts * 3, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>",
                                  additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tok.chat_template = QWEN_TEMPLATE
    assert tok.pad_token is None
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                      eos_token_id=tok.eos_token_id, bos_token_id=None, tie_word_embeddings=True)
    Qwen2ForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_data(folder: Path) -> dict[str, Path]:
    """sft.jsonl (messages with a system prompt), preferences.jsonl (implicit prompt),
    prompts.jsonl (conversational prompt-only)."""
    system = {"role": "system", "content": SYSTEM}
    sft, prefs, prompts = [], [], []
    for q, good, bad in exchanges():
        user = {"role": "user", "content": q}
        sft.append({"messages": [system, user, {"role": "assistant", "content": good}]})
        prefs.append({"chosen": [system, user, {"role": "assistant", "content": good}],
                      "rejected": [system, user, {"role": "assistant", "content": bad}]})
        prompts.append({"prompt": [system, user]})
    return {"sft": _write(folder / "sft.jsonl", sft), "preferences": _write(folder / "preferences.jsonl", prefs),
            "prompts": _write(folder / "prompts.jsonl", prompts)}
