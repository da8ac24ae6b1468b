"""Device policy: measured, not assumed.

On the CPU machines this was first measured on, bf16 matmul ran ~120x slower than fp32, and TRL's
default SFT config (bf16 autocast + gradient checkpointing) ran 16.6x slower than a plain torch
loop on the tiny model; with fp32 and no checkpointing, 1.1x. CPUs differ: on an AMD EPYC with
avx512_bf16 (session 3) bf16 matmul ran 2.5x faster than fp32 and TRL's defaults only 1.7x slower
than our stage (bench/cpu_bf16_matmul.py, bench/sft_throughput.py). fp32 stays the CPU default because it is never the slow
case; `--dtype bfloat16` is worth measuring on CPUs with avx512_bf16 or AMX. So:
  CUDA → bf16 (fp16 where bf16 is missing), gradient checkpointing only on request;
  CPU  → fp32, no checkpointing (it trades compute for memory we don't lack), threads = cores.
Each choice can be overridden from the stage config.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


@dataclass(frozen=True)
class DevicePolicy:
    device: torch.device
    dtype: torch.dtype  # compute dtype for training (autocast / mixed precision)
    gradient_checkpointing: bool
    threads: int

    @property
    def bf16(self) -> bool:
        return self.dtype == torch.bfloat16

    @property
    def fp16(self) -> bool:
        return self.dtype == torch.float16

    @property
    def use_cpu(self) -> bool:
        return self.device.type == "cpu"

    def describe(self) -> str:
        return (f"{self.device} {str(self.dtype).replace('torch.', '')}, gradient checkpointing "
                f"{'on' if self.gradient_checkpointing else 'off'}, {self.threads} threads")


def resolve_device(device: str = "auto", dtype: str = "auto", gradient_checkpointing: bool | None = None,
                   threads: int = 0, apply: bool = True) -> DevicePolicy:
    """Pick device, dtype and checkpointing; with apply=True also set torch's thread count."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        # under `accelerate launch` / torchrun each process loads its model on its own GPU,
        # not all of them on GPU 0 before the Trainer moves them
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{device}' requested but CUDA is not available on this machine")
    if dtype == "auto":
        if dev.type == "cuda":
            dt = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dt = torch.float32
    else:
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got '{dtype}'")
        dt = _DTYPES[dtype]
    n_threads = threads or os.cpu_count() or 1
    if apply and dev.type == "cpu":
        torch.set_num_threads(n_threads)
    if apply and dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev)
    gc = bool(gradient_checkpointing) if gradient_checkpointing is not None else False
    return DevicePolicy(device=dev, dtype=dt, gradient_checkpointing=gc, threads=n_threads)


def policy_from_config(cfg) -> DevicePolicy:
    """The policy for a stage config that carries the RuntimeConfig fields."""
    return resolve_device(cfg.device, cfg.dtype, cfg.gradient_checkpointing, cfg.threads)
