"""Run directories: every stage writes config.yaml, metrics.json, log.jsonl and a run card.

The run card is a README.md in Hugging Face card format (YAML header + text): what data went in
(path, sha256, row count), the hyperparameters, library versions and the metrics. A stage also
writes `inputs.json`, a fingerprint of its config and input files, so `rlhf demo` can skip a stage
whose inputs have not changed since it last finished.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Any

import yaml

from .config import dump_yaml
from .io import atomic_write_text, read_jsonl, sha256_file, write_json

LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "tokenizers")


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def data_info(path: str | Path, rows: int | None = None) -> dict[str, Any]:
    path = Path(path)
    return {"path": str(path), "sha256": sha256_file(path), "rows": rows}


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
                   summary: str, base_model: str | None = None) -> None:
    """config.yaml, metrics.json and README.md for one finished stage."""
    out = Path(out_dir)
    atomic_write_text(out / "config.yaml", dump_yaml(cfg))
    write_json(out / "metrics.json", metrics)
    header = {
        "library_name": "rlhf-loop",
        "tags": ["rlhf-loop", stage],
        "base_model": base_model,
        "datasets": [d["path"] for d in data.values()],
    }
    lines = ["---", yaml.safe_dump(header, sort_keys=False).strip(), "---", "",
             f"# rlhf-loop {stage}", "", summary.strip(), "", "## Data", "",
             "| input | path | rows | sha256 |", "|---|---|---|---|"]
    for name, d in data.items():
        lines.append(f"| {name} | `{d['path']}` | {d.get('rows', '')} | `{d['sha256'][:16]}…` |")
    lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
    for k, v in _flat(metrics).items():
        lines.append(f"| {k} | {_fmt(v)} |")
    lines += ["", "## Hyperparameters", "", "```yaml", dump_yaml(cfg).strip(), "```", "",
              "## Library versions", "", "| library | version |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in library_versions().items()]
    atomic_write_text(out / "README.md", "\n".join(lines) + "\n")


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

