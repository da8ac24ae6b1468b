"""Run directories: every stage writes config.yaml, metrics.json, log.jsonl and a run card.

The run card is a README.md in Hugging Face card format (YAML header + text): what data went in
(path, sha256, row count), the hyperparameters, library versions and the metrics. A stage also
writes `inputs.json`, a fingerprint of its config and input files, so `rlhf demo` can skip a stage
whose inputs have not changed since it last finished.

The header follows the Hub's model-card metadata: `library_name` is the library that loads the
directory (`peft` for a LoRA adapter, `transformers` for a full model), `base_model` the model the
weights start from (an absolute local path: models here are directories, never Hub names),
`datasets` the data the stage learned from (absolute paths; splits written into the output
directory and input models are listed in the card's Data table only) and `tags`.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Any

import yaml

from . import registry
from .config import dump_yaml
from .io import apply_umask, atomic_write_text, read_jsonl, sha256_file, write_json

LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "tokenizers")


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


# What a stage's output directory is, for the card header: the library that loads it and its tags.
# An RL algorithm leaves a LoRA adapter (peft); its tags are in its core/registry.py entry.
STAGE_LIBRARY = {"base": "transformers", "sft": "peft", **{a.name: "peft" for a in registry.ALGORITHMS}}
STAGE_TAGS = {"base": [], "sft": ["trl", "sft", "lora"], **{a.name: list(a.card_tags) for a in registry.ALGORITHMS},
              "reward": ["reward-model"], "eval": ["evaluation"]}
DATA_KINDS = ("dataset", "split", "model")


def data_info(path: str | Path, rows: int | None = None, kind: str = "dataset") -> dict[str, Any]:
    """One input of a stage for its card: `kind` is "dataset" (data it learned from: listed in the
    header's `datasets`), "split" (a part of a dataset, written by the stage) or "model"."""
    if kind not in DATA_KINDS:
        raise ValueError(f"kind must be one of {DATA_KINDS}, got {kind!r}")
    path = Path(path)
    return {"path": str(path), "sha256": sha256_file(path), "rows": rows, "kind": kind}


def fingerprint(cfg: Any, inputs: dict[str, str | Path]) -> str:
    """Hash of the resolved config and the contents of the input files/directories."""
    h = hashlib.sha256(dump_yaml(cfg).encode())
    for name in sorted(inputs):
        p = Path(inputs[name])
        h.update(name.encode())
        h.update(sha256_file(p).encode() if p.exists() else b"missing")
    return h.hexdigest()


def stage_status(out_dir: str | Path, fp: str) -> str:
    """'done' when the stage finished with this fingerprint, 'interrupted' when an attempt with this
    fingerprint started and did not finish (resume it), else 'stale' (start afresh)."""
    f = Path(out_dir) / "inputs.json"
    try:
        stamp = json.loads(f.read_text())
    except (FileNotFoundError, json.JSONDecodeError, OSError):
        return "stale"
    if stamp.get("fingerprint") != fp:
        return "stale"
    if stamp.get("status") == "done" and (Path(out_dir) / "metrics.json").exists():
        return "done"
    return "interrupted"


def mark_stage(out_dir: str | Path, fp: str, status: str) -> None:
    write_json(Path(out_dir) / "inputs.json", {"fingerprint": fp, "status": status})


def write_run_card(out_dir: str | Path, *, stage: str, cfg: Any, data: dict[str, dict], metrics: dict,
                   summary: str, base_model: str | Path | None = None, library_name: str | None = None,
                   tags: list[str] | None = None, datasets: list[str] | None = None) -> None:
    """config.yaml, metrics.json and README.md for one finished stage, the last files it writes;
    then every file of the stage's directory gets the permissions of the umask (core.io.apply_umask:
    the weight files come out of safetensors private to their owner)."""
    out = Path(out_dir)
    atomic_write_text(out / "config.yaml", dump_yaml(cfg))
    write_json(out / "metrics.json", metrics)
    write_card(out, stage=stage, cfg=cfg, data=data, metrics=metrics, summary=summary, base_model=base_model,
               library_name=library_name, tags=tags, datasets=datasets)
    apply_umask(out)


def card_header(stage: str, data: dict[str, dict], base_model: str | Path | None = None,
                library_name: str | None = None, tags: list[str] | None = None,
                datasets: list[str] | None = None) -> dict[str, Any]:
    """The card's YAML header. library_name and tags default to the stage's (STAGE_LIBRARY,
    STAGE_TAGS); `datasets` defaults to the inputs of kind "dataset"."""
    header: dict[str, Any] = {}
    library_name = library_name or STAGE_LIBRARY.get(stage)
    if library_name:
        header["library_name"] = library_name
    if base_model is not None:
        header["base_model"] = _absolute(base_model)
    if datasets is None:
        datasets = [_absolute(d["path"]) for d in data.values() if d.get("kind", "dataset") == "dataset"]
    header["datasets"] = list(dict.fromkeys(datasets))
    tags = tags if tags is not None else STAGE_TAGS.get(stage, [])
    header["tags"] = list(dict.fromkeys(["rlhf-loop", stage, *tags]))
    return header


def write_card(out_dir: str | Path, *, stage: str, cfg: Any, data: dict[str, dict], metrics: dict, summary: str,
               base_model: str | Path | None = None, library_name: str | None = None,
               tags: list[str] | None = None, datasets: list[str] | None = None) -> Path:
    """README.md alone (for directories where config.yaml and metrics.json do not belong, such as a
    merged model's)."""
    out = Path(out_dir)
    header = card_header(stage, data, base_model, library_name, tags, datasets)
    lines = ["---", yaml.safe_dump(header, sort_keys=False, allow_unicode=True).strip(), "---", "",
             f"# rlhf-loop {stage}", "", summary.strip(), "", "## Data", "",
             "| input | kind | path | rows | sha256 |", "|---|---|---|---|---|"]
    for name, d in data.items():
        lines.append(f"| {name} | {d.get('kind', 'dataset')} | `{d['path']}` | {_blank(d.get('rows'))} | "
                     f"`{d['sha256'][:16]}…` |")
    lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
    for k, v in _flat(metrics).items():
        lines.append(f"| {k} | {_fmt(v)} |")
    lines += ["", "## Hyperparameters", "", "```yaml", dump_yaml(cfg).strip(), "```", "",
              "## Library versions", "", "| library | version |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in library_versions().items()]
    return atomic_write_text(out / "README.md", "\n".join(lines) + "\n")


def read_card_header(path: str | Path) -> dict[str, Any]:
    """The YAML header of a card (a README.md, or the directory holding one); {} when there is none."""
    path = Path(path)
    if path.is_dir():
        path = path / "README.md"
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return {}
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---\n", 4)
    if end < 0:
        return {}
    header = yaml.safe_load(text[4:end])
    return header if isinstance(header, dict) else {}


def _absolute(path: str | Path) -> str:
    return str(Path(path).resolve())


def _blank(v: Any) -> str:
    return "" if v is None else str(v)


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif not isinstance(v, list):
            out[f"{prefix}{k}"] = v
    return out


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def read_log(path: str | Path) -> list[dict]:
    return read_jsonl(path) if Path(path).exists() else []

