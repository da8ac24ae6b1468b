"""`rlhf export --merge OUT`: fold a LoRA adapter into the base weights and save a standalone
Hugging Face model (plus tokenizer) that transformers or vLLM load without PEFT."""
from __future__ import annotations

from pathlib import Path

from core.config import ConfigError, ExportConfig, tokenizer_fixes
from core.device import resolve_device
from core.models import load_policy, load_tokenizer
from core.policies import adapter_dir, base_dir


def main(cfg: ExportConfig) -> Path:
    if not cfg.merge:
        raise ConfigError("export: --merge OUT (the output directory) is required")
    out = Path(cfg.merge)
    adapter = adapter_dir(cfg.run, cfg.policy)
    if adapter is None:
        raise ConfigError("export: the base policy has no adapter to merge; pick sft, dpo or ppo")
    device = resolve_device("cpu", "float32")  # merging is cheap; fp32 keeps it exact
    tok = load_tokenizer(base_dir(cfg.run), **tokenizer_fixes(cfg))
    model = load_policy(base_dir(cfg.run), device, tok, adapter=adapter)
    merged = model.merge_and_unload()
    merged.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    print(f"[export] {adapter} merged into {base_dir(cfg.run)} → {out}")
    return out
