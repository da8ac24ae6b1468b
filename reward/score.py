"""Scoring with a trained reward model: `load_scorer(path).score(prompts, responses)`.

The RL and eval stages call this. Text is re-tokenized with the reward model's own tokenizer and
format (reward/model.py: text pair for encoders, chat template for decoders), whatever tokenizer
the policy uses. Batches are formed longest first so similar lengths share a batch (little
padding), and the scores come back in the input order. Encoder and LoRA-decoder reward models
load the same way (reward_model.json says which).

`rlhf reward score --run DIR --file rows.jsonl` → `score_file`: prompt/response rows in, the same
rows with a `reward` field out.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from core.prompts import Messages
from core.records import prompt_field, read_rows, response_field
from reward.model import META_FILE, encode, load_reward_model, score_encoded


def resolve_model_dir(run_or_path: str | Path) -> Path:
    """A reward model directory, or a run directory holding one in reward/."""
    p = Path(run_or_path)
    if (p / META_FILE).exists():
        return p
    if (p / "reward" / META_FILE).exists():
        return p / "reward"
    raise FileNotFoundError(f"{p}: no reward model here or in {p / 'reward'} (train one with `rlhf reward --run RUN`)")


class Scorer:
    """Batched, no-grad scoring with a loaded reward model."""

    def __init__(self, rm, tok, meta: dict, device: torch.device, batch_size: int = 64,
                 dtype: torch.dtype = torch.float32):
        self.rm, self.tok, self.meta = rm, tok, meta
        self.device, self.batch_size, self.dtype = device, batch_size, dtype
        self.max_length = meta["max_length"]

    def encode(self, prompts: Sequence[str | Messages], responses: Sequence[str]) -> list[dict]:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        return [encode(self.tok, self.rm.kind, p, r, self.max_length) for p, r in zip(prompts, responses)]

    def details(self, prompts: Sequence[str | Messages], responses: Sequence[str]) -> dict[str, torch.Tensor | None]:
        """{"reward": final (N,), "pairwise": the pairwise head (N,), "aspects": (N, 7) on 1-5 or None}."""
        if not len(prompts):
            return {"reward": torch.empty(0), "pairwise": torch.empty(0), "aspects": None}
        raw, aspects = score_encoded(self.rm, self.encode(prompts, responses), self.tok.pad_token_id,
                                     self.batch_size, self.device, self.dtype)
        return {"reward": self.rm.final_reward(raw, aspects), "pairwise": raw, "aspects": aspects}

    def score(self, prompts: Sequence[str | Messages], responses: Sequence[str]) -> list[float]:
        """One reward per (prompt, response), in the input order. A prompt is a string or the
        conversation's messages (system prompt and earlier turns are scored with it)."""
        return self.details(prompts, responses)["reward"].tolist()

    __call__ = score


def load_scorer(path: str | Path, device: str | torch.device | None = None, batch_size: int = 64) -> Scorer:
    """A Scorer for a reward model directory (or a run directory with reward/ inside).

    device None: CUDA when available (bf16 autocast where supported), else CPU in fp32.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    dtype = torch.float32
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    rm, tok, meta = load_reward_model(resolve_model_dir(path), device)
    return Scorer(rm, tok, meta, device, batch_size, dtype)


def _validate_scoring_row(row: dict) -> dict:
    """A row to score: `prompt` (a string or the conversation's messages) and `response` (a
    string, which may be empty, or one assistant message); other fields pass through."""
    response = row.get("response")
    return {**row, "_prompt": prompt_field(row.get("prompt")),
            "_response": response if isinstance(response, str) else response_field(response, "response")}


def score_file(run_or_path: str | Path, file: str | Path, out: str | Path | None = None,
               batch_size: int = 64, device: str | None = None) -> Path:
    """Score every prompt/response row of `file` (JSONL, JSON, CSV, Parquet; bad rows are reported as
    file:line) and write the rows with a `reward` field to `out` (default: <file stem>.scored.jsonl)."""
    from core.io import write_jsonl

    rows = read_rows(file, _validate_scoring_row, outcome="nothing was scored")
    scorer = load_scorer(run_or_path, device=device, batch_size=batch_size)
    rewards = scorer.score([r["_prompt"] for r in rows], [r["_response"] for r in rows])
    file = Path(file)
    out = Path(out) if out else file.with_name(file.stem + ".scored.jsonl")
    write_jsonl(out, [{k: v for k, v in r.items() if not k.startswith("_")} | {"reward": x}
                      for r, x in zip(rows, rewards)])
    print(f"[reward] scored {len(rows)} rows with {resolve_model_dir(run_or_path)} → {out}")
    return out


def cli_score(args: list[str]) -> int:
    """`rlhf reward score --run DIR --file rows.jsonl [--out FILE] [--batch_size N] [--device D] [--threads N]`."""
    import argparse

    ap = argparse.ArgumentParser(prog="rlhf reward score",
                                 description="Score prompt/response rows with the run's reward model.")
    ap.add_argument("--run", default="runs/demo", help="run directory (uses <run>/reward) or a reward model directory")
    ap.add_argument("--file", required=True, help="rows with 'prompt' (a string or chat messages) and 'response' "
                                                  "(jsonl, json, csv, parquet)")
    ap.add_argument("--out", default=None, help="output JSONL (default: <file stem>.scored.jsonl)")
    ap.add_argument("--batch_size", type=int, default=64, help="sequences per forward pass")
    ap.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for torch, as every stage's --threads "
                                                           "(0 = all cores)")
    a = ap.parse_args(args)
    if a.threads < 0:
        ap.error(f"--threads {a.threads}: must be 0 (all cores) or more")
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    score_file(a.run, a.file, a.out, a.batch_size, a.device)
    return 0
