"""SFT on the tiny model for a few steps: LoRA changes, the base does not, resume is exact."""
import json

import pytest
import torch
from safetensors.torch import load_file

from core.config import SFTConfig, load_config


def _cfg(tiny_base, chat_file, out, **kw):
    base = dict(run=str(out.parent), model=str(tiny_base), data=str(chat_file), out=str(out), max_steps=6,
                eval_steps=2, logging_steps=1, batch_size=4, early_stopping_patience=0, lora_r=4,
                lora_alpha=8, learning_rate=5e-3, val_fraction=0.15, save_total_limit=5)
    base.update(kw)
    return load_config(SFTConfig, None, base)


def _losses(out):
    return [(r["step"], round(r["loss"], 5)) for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())
            if "loss" in r]


def test_sft_trains_lora_only_and_writes_run_dir(tiny_base, chat_file, tmp_path):
    from sft.train import main

    out = tmp_path / "sft"
    metrics = main(_cfg(tiny_base, chat_file, out))
    assert metrics["steps"] == 6
    by_position = metrics["val_nll_by_position"]
    assert by_position.keys() == {"first", "eos", "other"} and all(0 < v < 50 for v in by_position.values())
    for f in ("adapter_config.json", "adapter_model.safetensors", "config.yaml", "metrics.json", "log.jsonl",
              "README.md", "train.jsonl", "val.jsonl", "tokenizer.json"):
        assert (out / f).exists(), f
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "sha256" in card and "val_perplexity" in card

    # trained LoRA weights differ from their initialisation (B starts at zero in PEFT)
    lora = load_file(str(out / "adapter_model.safetensors"))
    b_mats = [v for k, v in lora.items() if "lora_B" in k]
    assert b_mats and all(v.abs().sum() > 0 for v in b_mats)

    # the base weights on disk are untouched, and base + adapter differs from the base
    from core.device import resolve_device
    from core.models import load_causal_lm, load_policy, load_tokenizer

    dev = resolve_device("cpu", apply=False)
    tok = load_tokenizer(tiny_base)
    base = load_causal_lm(tiny_base, dev, tok)
    ref = load_file(str(tiny_base / "model.safetensors"))
    for name, p in base.state_dict().items():
        if name in ref:
            assert torch.equal(p, ref[name]), name
    policy = load_policy(tiny_base, dev, tok, adapter=out)
    ids = torch.tensor([tok("When do you open?")["input_ids"]])
    assert not torch.allclose(base(ids).logits, policy(ids).logits)
    # validation split is disjoint from training prompts
    train_p = {json.loads(x)["prompt"][0]["content"] for x in (out / "train.jsonl").read_text().splitlines()}
    val_p = {json.loads(x)["prompt"][0]["content"] for x in (out / "val.jsonl").read_text().splitlines()}
    assert val_p and not train_p & val_p


class _Interrupt(Exception):
    pass


def test_resume_reproduces_uninterrupted_losses(tiny_base, chat_file, tmp_path):
    from transformers import TrainerCallback

    from sft.train import main

    full = tmp_path / "full" / "sft"
    main(_cfg(tiny_base, chat_file, full))

    class StopAfter4(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 5:  # crash after checkpoint-4 was saved, mid-way to the next
                raise _Interrupt()

    part = tmp_path / "part" / "sft"
    with pytest.raises(_Interrupt):
        main(_cfg(tiny_base, chat_file, part), callbacks=[StopAfter4()])
    assert (part / "checkpoints" / "checkpoint-4").exists()
    main(_cfg(tiny_base, chat_file, part, resume=True))
    assert _losses(part) == _losses(full)
    assert [s for s, _ in _losses(part)] == [1, 2, 3, 4, 5, 6]


def test_data_errors_stop_before_training(tiny_base, tmp_path):
    from core.records import DataError
    from sft.train import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "hi", "completion": "hello"}\n{"prompt": "x"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: \(row\)"):
        main(_cfg(tiny_base, bad, tmp_path / "sft"))
    assert not (tmp_path / "sft" / "adapter_model.safetensors").exists()


def test_lean_trainer_loss_equals_trls_on_the_same_batch(tiny_base, tmp_path):
    """sft.train.trainer_class swaps TRL's fused-head loss for Trainer.compute_loss: same number,
    completion tokens only (the prompt's labels are -100 in the batch)."""
    from peft import get_peft_model
    from trl import SFTTrainer

    from conftest import tiny_chat_rows
    from core.device import resolve_device
    from core.models import load_causal_lm, load_tokenizer, lora_config
    from sft.train import to_dataset, trainer_class, trl_args

    cfg = SFTConfig(max_steps=1, batch_size=4, early_stopping_patience=0, lora_r=4)
    policy, tok = resolve_device("cpu"), load_tokenizer(tiny_base)
    torch.manual_seed(0)
    model = get_peft_model(load_causal_lm(tiny_base, policy, tok), lora_config(cfg))
    args = trl_args(cfg, policy, tmp_path)
    args.eval_strategy, args.load_best_model_at_end = "no", False
    data = to_dataset(tiny_chat_rows())
    trl = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    lean = trainer_class()(model=model, args=args, train_dataset=data, processing_class=tok)
    batch = next(iter(trl.get_train_dataloader()))
    assert (batch["labels"] == -100).any() and (batch["labels"] != -100).any()
    with torch.no_grad():
        want = trl.compute_loss(model, dict(batch))
        got = lean.compute_loss(model, dict(batch))
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


def test_format_warning_names_the_end_of_turn_token(capsys):
    from sft.train import warn_format

    assert not warn_format({"first": 3.5, "eos": 0.25, "other": 0.7})
    assert capsys.readouterr().out == ""
    assert warn_format({"first": 5.5, "eos": 3.06, "other": 0.54})
    out = capsys.readouterr().out
    assert "end-of-turn token costs 3.06 nats" in out and "chat template" in out

