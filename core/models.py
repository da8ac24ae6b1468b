"""Model and tokenizer loading from local Hugging Face directories, with a tokenizer preflight.

Every model is a local path: nothing is fetched from a hub (HF_HUB_OFFLINE is set on import).
The preflight enforces the tokenizer rules (docs/architecture.md) before any training starts,
because each of them silently ruins a run when broken: no chat template (stages format
differently), pad == eos (EOS masked out of the loss, so the model never learns to stop), a
completion that does not end in EOS, and a double BOS after templating.
"""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import torch  # noqa: E402

from .config import MissingFileError, UserError  # noqa: E402
from .device import DevicePolicy  # noqa: E402

PAD_TOKEN = "<|pad|>"


class PreflightError(UserError):
    """The tokenizer breaks a rule that would silently spoil training; the message says which."""


# The files a saved tokenizer has at least one of (fast, slow BPE, WordPiece, SentencePiece)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "*.model", "merges.txt")


def _check_dir(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise MissingFileError(f"{what} '{p}' is not a local directory (models are never downloaded)")
    if what in ("model", "tokenizer") and not (p / "config.json").exists() and not list(p.glob("tokenizer*")):
        raise UserError(f"{what} '{p}': not a Hugging Face model directory (no config.json or tokenizer files)")
    if what == "tokenizer" and not any(any(p.glob(g)) for g in TOKENIZER_FILES):
        # transformers would build an empty tokenizer from config.json alone, and training would
        # go on with NaN losses
        raise UserError(f"tokenizer '{p}': no tokenizer files there ({', '.join(TOKENIZER_FILES[:3])}, ...); "
                        "save the model's tokenizer into it with tokenizer.save_pretrained(DIR)")
    return p


def pin_base_path(peft_model, base_path: str | Path) -> None:
    """Record the base model's absolute path in every adapter's config, so the saved
    adapter_config.json's `base_model_name_or_path` names it from any working directory:
    `peft.AutoPeftModelForCausalLM.from_pretrained(adapter_dir)` loads the base from there, and
    `core.policies.base_dir` finds a run's base through it. PEFT would otherwise record the path
    as the model was loaded, relative to the directory the stage ran in."""
    base = str(Path(base_path).resolve())
    for cfg in peft_model.peft_config.values():
        cfg.base_model_name_or_path = base


def load_tokenizer(path: str | Path, add_pad_if_needed: bool = True, eos_token: str = "",
                   chat_template: str = ""):
    """Load a tokenizer; when its pad token is missing or equals EOS, add a distinct one.

    eos_token and chat_template are the user's fixes (the stages' --eos_token and --chat_template):
    a token of the vocabulary that ends an assistant turn, and a Jinja template file. Adding a pad
    token grows the vocabulary: the caller must `resize_token_embeddings` (load_policy does). The
    preflight then sees a tokenizer that follows the rules.
    """
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(_check_dir(path, "tokenizer")))
    if chat_template:
        template = Path(chat_template)
        if not template.is_file():
            raise UserError(f"--chat_template {chat_template}: file not found")
        try:
            tok.chat_template = template.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"--chat_template {chat_template}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    if eos_token:
        if tok.convert_tokens_to_ids(eos_token) in (None, tok.unk_token_id):
            raise UserError(f"--eos_token {eos_token!r}: not a token of the tokenizer in {path}")
        tok.eos_token = eos_token
    if add_pad_if_needed and (tok.pad_token is None or tok.pad_token_id == tok.eos_token_id):
        tok.add_special_tokens({"pad_token": PAD_TOKEN})
    return tok


def preflight(tok) -> None:
    """Raise PreflightError listing every broken tokenizer rule."""
    problems = []
    if not getattr(tok, "chat_template", None):
        problems.append("no chat template: every stage must format chats the same way; pass --chat_template "
                        "FILE (a Jinja template)")
    if tok.eos_token_id is None:
        problems.append("no EOS token: generation could never stop")
    if tok.pad_token_id is None:
        problems.append("no pad token: add one distinct from EOS")
    elif tok.pad_token_id == tok.eos_token_id:
        problems.append(f"pad_token == eos_token ({tok.eos_token!r}): padding masks would drop EOS from the "
                        "loss and the model would never learn to stop; add a distinct pad token")
    if not problems:
        problems += _template_problems(tok)
    if len(problems) == 1:
        raise PreflightError(f"tokenizer preflight failed: {problems[0]}")
    if problems:
        raise PreflightError("tokenizer preflight failed:\n  - " + "\n  - ".join(problems))


def _turn_end(tok, completion: list[int]) -> str | None:
    """The special token that closes the template's assistant turn, if the last token is one."""
    if not completion:
        return None
    added = getattr(tok, "added_tokens_decoder", {}).get(completion[-1])  # special added tokens count too
    if completion[-1] in getattr(tok, "all_special_ids", []) or (added is not None and added.special):
        return tok.convert_ids_to_tokens(completion[-1])
    return None


def _template_problems(tok) -> list[str]:
    """Render one exchange and check EOS closes the completion and BOS is not doubled."""
    problems = []
    prompt = [{"role": "user", "content": "Hi"}]
    full = prompt + [{"role": "assistant", "content": "Hello there"}]
    try:
        p_ids = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False)
        f_ids = tok.apply_chat_template(full, tokenize=True, return_dict=False)
    except Exception as e:  # noqa: BLE001 - any template failure is a preflight failure
        return [f"chat template failed to render: {e}"]
    if f_ids[: len(p_ids)] != p_ids:
        problems.append("chat template: the prompt with generation prompt is not a prefix of the full chat, "
                        "so completion-only loss masks would be misaligned")
    completion = list(f_ids[len(p_ids):])
    # Templates such as Qwen's put a newline after the end-of-turn token; allow whitespace after EOS.
    while completion and completion[-1] != tok.eos_token_id and not tok.decode([completion[-1]]).strip():
        completion.pop()
    if not completion or completion[-1] != tok.eos_token_id:
        end = _turn_end(tok, completion)
        fix = (f"; the template ends a turn with {end!r}: pass --eos_token '{end}'" if end else
               "; pass --chat_template FILE with a template that ends each assistant turn with EOS, or "
               "--eos_token TOKEN naming the token that ends a turn")
        problems.append(f"EOS ({tok.eos_token!r}) is not appended to assistant completions by the chat "
                        "template: the model would never learn to stop" + fix)
    bos = tok.bos_token_id
    if bos is not None:
        # Every stage tokenizes templated text with add_special_tokens=False (TRL's trainers do
        # too), so a tokenizer that adds BOS beside a template that writes one (Llama 3,
        # Mistral) is fine; a template that writes it twice is not.
        text = tok.apply_chat_template(full, tokenize=False)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if len(ids) >= 2 and ids[0] == bos and ids[1] == bos:
            problems.append("double BOS: the chat template writes BOS twice at the start of a chat; pass "
                            "--chat_template FILE with a template that writes it once")
    return problems


def quantization_config(policy: DevicePolicy):
    """QLoRA's 4-bit base (Dettmers et al. 2023): NF4 weights, double quantization (the
    quantization constants quantized too), matmuls in the policy's compute dtype."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=policy.dtype,
                              bnb_4bit_use_double_quant=True)


def load_causal_lm(path: str | Path, policy: DevicePolicy, tokenizer=None, load_in_4bit: bool = False):
    """Load a causal LM from a local directory onto the policy's device."""
    from transformers import AutoModelForCausalLM

    kwargs = {}
    if load_in_4bit:
        if policy.device.type != "cuda":
            raise UserError("load_in_4bit (QLoRA) needs CUDA and bitsandbytes; this run is on "
                            f"{policy.device}")
        kwargs["quantization_config"] = quantization_config(policy)
    # Weights in the compute dtype on GPU (halves memory); fp32 on CPU (bf16 is slow there).
    dtype = policy.dtype if policy.device.type == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(_check_dir(path, "model")), dtype=dtype, **kwargs)
    if tokenizer is not None and len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    if tokenizer is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        if model.generation_config is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
            model.generation_config.eos_token_id = tokenizer.eos_token_id
    if not load_in_4bit:
        model.to(policy.device)
    return model


def lora_config(cfg):
    """PEFT LoraConfig from the LoRA fields of a stage config."""
    from peft import LoraConfig

    targets = cfg.target_modules
    if targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM", bias="none")


def load_policy(base_path: str | Path, policy: DevicePolicy, tokenizer, adapter: str | Path | None = None,
                trainable: bool = False, load_in_4bit: bool = False):
    """Base model + a LoRA adapter from disk (or the base alone when adapter is None)."""
    model = load_causal_lm(base_path, policy, tokenizer, load_in_4bit=load_in_4bit)
    if adapter is None:
        return model
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, str(_check_dir(adapter, "adapter")), is_trainable=trainable)
    pin_base_path(model, base_path)
    return model


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
