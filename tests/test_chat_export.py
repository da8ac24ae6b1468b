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
