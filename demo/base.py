"""`rlhf base`: the tiny embedded default policy. Trains a byte-level BPE tokenizer with a
ChatML template on the demo corpus and pretrains a small Llama on it, saved as an ordinary HF
directory so every later stage takes the path a real model takes."""
from __future__ import annotations

from pathlib import Path

from core.config import UserError
from demo.config import BaseConfig
from core.models import preflight
from core.runcard import data_info, write_run_card

DOC_SEPARATOR = "<|endoftext|>"


def read_corpus(path: Path) -> list[str]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: corpus not found (build it with `rlhf data demo --run ...`)")
    docs = [d.strip() for d in path.read_text(encoding="utf-8").split(DOC_SEPARATOR)]
    docs = [d for d in docs if d]
    if not docs:
        raise ValueError(f"{path}: corpus is empty")
    return docs


def main(cfg: BaseConfig) -> dict:
    from core.device import resolve_device
    from demo.pretrain import pretrain
    from demo.tokenizer import train_tokenizer

    if not 0.0 <= cfg.short_seq_share <= 1.0:
        raise UserError(f"short_seq_share must be between 0 and 1, got {cfg.short_seq_share}")
    run = Path(cfg.run)
    corpus = Path(cfg.corpus) if cfg.corpus else run / "data" / "corpus.txt"
    out = Path(cfg.out) if cfg.out else run / "base"
    docs = read_corpus(corpus)
    # the loop runs on the CPU: the policy says whether bf16 autocast is faster there (core/device.py)
    dtype = resolve_device("cpu", cfg.dtype, threads=cfg.threads, apply=False).dtype
    print(f"[base] {len(docs)} documents from {corpus} → {out} ({str(dtype).replace('torch.', '')})")
    tok = train_tokenizer(docs, vocab_size=cfg.vocab_size)
    preflight(tok)
    metrics = pretrain(
        docs, tok, out, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers, num_heads=cfg.num_heads,
        num_kv_heads=cfg.num_kv_heads, intermediate_size=cfg.intermediate_size, seq_len=cfg.seq_len,
        batch_size=cfg.batch_size, max_steps=cfg.max_steps, lr=cfg.learning_rate,
        warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay,
        short_steps=round(cfg.short_seq_share * cfg.max_steps), seed=cfg.seed, threads=cfg.threads,
        log_path=out.parent / f".{out.name}.log.jsonl", dtype=dtype)
    # the model directory is renamed into place atomically; move the log in beside it
    log_tmp = out.parent / f".{out.name}.log.jsonl"
    if log_tmp.exists():
        log_tmp.replace(out / "log.jsonl")
    write_run_card(out, stage="base", cfg=cfg, metrics=metrics, data={"corpus": data_info(corpus, len(docs))},
                   summary=(f"A {metrics.get('n_params', 0) / 1e6:.1f}M-parameter Llama-architecture model "
                            "pretrained from scratch on the demo corpus, with a byte-level BPE tokenizer "
                            "and a ChatML chat template (EOS = <|im_end|>, pad = <|pad|>)."))
    print(f"[base] done: {metrics}")
    return metrics
