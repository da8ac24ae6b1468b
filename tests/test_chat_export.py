import torch

from core.config import ChatConfig, ExportConfig, load_config


def test_export_merge_matches_adapter(tiny_run, tmp_path):
    from transformers import AutoModelForCausalLM

    from core.device import resolve_device
    from core.export import main
    from core.models import load_policy, load_tokenizer

    out = main(load_config(ExportConfig, None, {"run": str(tiny_run), "merge": str(tmp_path / "merged")}))
    merged = AutoModelForCausalLM.from_pretrained(str(out))
    assert not any("lora" in k for k in merged.state_dict())  # a plain model, no PEFT needed
    tok = load_tokenizer(out)
    peft = load_policy(tiny_run / "base", resolve_device("cpu", apply=False), tok, adapter=tiny_run / "sft")
    ids = torch.tensor([tok("Are you open Friday?")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, peft(ids).logits, atol=1e-5)


def test_chat_streams_reply_and_keeps_history(tiny_run, capsys):
    from core.chat import main

    said = iter(["Are you open on Monday?", "/reset", "And Sunday?", ""])
    main(load_config(ChatConfig, None, {"run": str(tiny_run), "max_new_tokens": 8, "temperature": 0.0}),
         read=lambda _prompt: next(said))
    out = capsys.readouterr().out
    assert out.count("bot> ") == 2  # two questions answered, /reset and the empty line are not
    assert "Chatting with 'sft'" in out


def test_export_requires_output(tiny_run):
    import pytest

    from core.config import ConfigError
    from core.export import main

    with pytest.raises(ConfigError, match="--merge OUT"):
        main(load_config(ExportConfig, None, {"run": str(tiny_run)}))


def _adapter_on_another_base(tiny_run, tmp_path):
    """A copy of the run's SFT adapter whose adapter_config.json names another base: a copy of the
    run's base with every weight scaled, so outputs on the two bases differ."""
    import json
    import shutil

    from transformers import AutoModelForCausalLM

    other = tmp_path / "other-base"
    model = AutoModelForCausalLM.from_pretrained(str(tiny_run / "base"))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.1)
    model.save_pretrained(str(other))
    adapter = tmp_path / "elsewhere" / "adapter"
    shutil.copytree(tiny_run / "sft", adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(other.resolve())
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    return other, adapter


def test_export_and_chat_of_an_adapter_directory_use_its_own_base(tiny_run, tmp_path, capsys):
    """--policy DIR: the base the adapter names and the tokenizer saved beside it, not the run's
    (which --run need not even name)."""
    import pytest

    from transformers import AutoModelForCausalLM

    from core.chat import main as chat
    from core.config import MissingFileError
    from core.device import resolve_device
    from core.export import main
    from core.models import load_policy, load_tokenizer

    other, adapter = _adapter_on_another_base(tiny_run, tmp_path)
    out = main(load_config(ExportConfig, None, {"run": str(tmp_path / "no-run-here"), "policy": str(adapter),
                                               "merge": str(tmp_path / "merged")}))
    assert f"merged into {other.resolve()}" in capsys.readouterr().out
    merged = AutoModelForCausalLM.from_pretrained(str(out))
    tok = load_tokenizer(adapter)
    ids = torch.tensor([tok("Are you open Friday?")["input_ids"]])
    cpu = resolve_device("cpu", apply=False)
    with torch.no_grad():
        logits = merged(ids).logits
        assert torch.allclose(logits, load_policy(other, cpu, tok, adapter=adapter)(ids).logits, atol=1e-5)
        assert not torch.allclose(logits, load_policy(tiny_run / "base", cpu, tok, adapter=adapter)(ids).logits,
                                  atol=1e-3)

    said = iter(["Are you open on Monday?", ""])
    chat(load_config(ChatConfig, None, {"run": str(tiny_run), "policy": str(adapter), "max_new_tokens": 4,
                                        "temperature": 0.0}), read=lambda _prompt: next(said))
    assert f"Chatting with {adapter} on {other.resolve()}" in capsys.readouterr().out

    other.rename(other.with_name("moved"))  # the base it names is gone: said, never another model in its place
    with pytest.raises(MissingFileError, match="the base model it was trained on, .*other-base.* is not a model"):
        main(load_config(ExportConfig, None, {"run": str(tiny_run), "policy": str(adapter),
                                             "merge": str(tmp_path / "merged2")}))
