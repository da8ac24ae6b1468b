"""`rlhf export --merge OUT`: fold a LoRA adapter into the base weights and save a standalone
Hugging Face model (plus tokenizer and a card) that transformers or vLLM load without PEFT.

The merge runs on the CPU in float32, so W + (alpha/r)·BA is computed exactly; the merged
weights are then cast to `--dtype` (float32, bfloat16 or float16; auto = float32, the CPU's
dtype in core/device.py) before saving. bfloat16 halves the files of a float32 export and is
the dtype most released causal LMs ship in.
"""
from __future__ import annotations

from pathlib import Path

from core.config import ConfigError, ExportConfig, tokenizer_fixes
from core.device import resolve_device
from core.io import apply_umask
from core.models import load_policy, load_tokenizer
from core.policies import adapter_stages, policy_files
from core.runcard import data_info, read_card_header, write_card

EXPORT_DTYPES = ("float32", "bfloat16", "float16")


def export_dtype(name: str):
    """The torch dtype of the merged weights for `--dtype` (auto = float32)."""
    import torch

    name = "float32" if name == "auto" else name
    if name not in EXPORT_DTYPES:
        raise ConfigError(f"--dtype must be auto, {', '.join(EXPORT_DTYPES)}; got '{name}'")
    return getattr(torch, name)


def check_merge_dir(out: Path) -> None:
    """--merge OUT must be new, empty, or an earlier export (its card's tags say `export`):
    anything else (a stage's directory, someone's files) would be overwritten."""
    if out.is_file():
        raise ConfigError(f"--merge {out} is a file; name a directory to create")
    if not out.is_dir() or not any(out.iterdir()):
        return
    earlier = "export" in (read_card_header(out).get("tags") or [])
    if earlier and not (out / "adapter_config.json").exists() and not (out / "inputs.json").exists():
        print(f"[export] replacing the earlier export in {out}")
        return
    raise ConfigError(f"--merge {out} already holds other files (a run's stage or someone's); name a new "
                      "or empty directory")


def main(cfg: ExportConfig) -> Path:
    if not cfg.merge:
        raise ConfigError("--merge OUT (the output directory) is required")
    dtype = export_dtype(cfg.dtype)
    out = Path(cfg.merge)
    check_merge_dir(out)
    if cfg.policy == "base":
        raise ConfigError(f"the base policy has no adapter to merge; pick {' or '.join(adapter_stages())}")
    base, tokenizer, adapter = policy_files(cfg.run, cfg.policy)
    device = resolve_device("cpu", "float32")  # merging is cheap; fp32 keeps it exact
    tok = load_tokenizer(tokenizer, **tokenizer_fixes(cfg))
    model = load_policy(base, device, tok, adapter=adapter)
    merged = model.merge_and_unload().to(dtype)
    merged.config.dtype = dtype  # config.json records the dtype the weights are stored in
    merged.config.eos_token_id = tok.eos_token_id  # as generation_config.json: the token that ends a turn
    merged.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    trained = read_card_header(adapter)
    name = str(dtype).replace("torch.", "")
    write_card(
        out, stage="export", cfg=cfg, base_model=base, library_name="transformers",
        tags=["merged", *[t for t in trained.get("tags", []) if t not in ("rlhf-loop", "lora")]],
        datasets=trained.get("datasets", []),
        data={"adapter": data_info(adapter, kind="model")},
        metrics={"dtype": name, "parameters": sum(p.numel() for p in merged.parameters())},
        summary=(f"The LoRA adapter `{adapter}` merged into its base model `{base}` (W + (alpha/r)·BA, computed "
                 f"in float32) and saved in {name}: a standalone model that transformers and vLLM load without "
                 "PEFT. `datasets` are those the adapter was trained on (its own card)."))
    apply_umask(out)  # safetensors writes the weights 0600
    print(f"[export] {adapter} merged into {base} → {out} ({name})")
    return out
