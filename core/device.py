"""Device policy: measured, not assumed.

On the CPU machines this was first measured on, bf16 matmul ran ~120x slower than fp32, and TRL's
default SFT config (bf16 autocast + gradient checkpointing) ran 16.6x slower than a plain torch
loop on the tiny model; with fp32 and no checkpointing, 1.1x. CPUs differ: on an AMD EPYC with
avx512_bf16, bf16 matmul ran 2.5x faster than fp32 and TRL's defaults only 1.7x slower than our
stage (bench/cpu_bf16_matmul.py, bench/sft_throughput.py). fp32 stays the CPU default because it
is never the slow case; `--dtype bfloat16` is worth measuring on CPUs with avx512_bf16 or AMX. So:
  CUDA → bf16 (fp16 where bf16 is missing), gradient checkpointing only on request;
  CPU  → fp32, no checkpointing (it trades compute for memory we don't lack), threads = cores.
Each choice can be overridden from the stage config.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .config import UserError

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


class DeviceError(UserError, RuntimeError):
    """The requested device or dtype does not exist on this machine (a GPU recipe on a CPU-only
    machine, a typo in --dtype): the CLI prints the message without a traceback."""


def plan_device(device: str = "auto", dtype: str = "auto", gradient_checkpointing: bool | None = None,
                threads: int = 0, *, cuda_available: bool, bf16_supported: bool, cpu_count: int,
                local_rank: str | None = None) -> DevicePolicy:
    """The device policy for a described machine: a pure function of the stage's settings and the
    machine's facts (CUDA present, bf16 supported, CPU cores, the launcher's LOCAL_RANK), so GPU
    recipes can be checked on a machine without a GPU. `resolve_device` passes the real facts."""
    if device == "auto":
        device = "cuda" if cuda_available else "cpu"
    if device == "cuda" and local_rank is not None:
        # under `accelerate launch` / torchrun each process loads its model on its own GPU,
        # not all of them on GPU 0 before the Trainer moves them
        device = f"cuda:{local_rank}"
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise DeviceError(f"device must be auto, cpu, cuda or cuda:N, got '{device}'") from e
    if dev.type == "cuda" and not cuda_available:
        raise DeviceError(f"device '{device}' requested but CUDA is not available on this machine (a GPU "
                          "recipe on a CPU? pass --device cpu --dtype float32 to run it on the CPU)")
    if dtype == "auto":
        if dev.type == "cuda":
            dt = torch.bfloat16 if bf16_supported else torch.float16
        else:
            dt = torch.float32
    else:
        if dtype not in _DTYPES:
            raise DeviceError(f"dtype must be auto, float32, bfloat16 or float16, got '{dtype}'")
        dt = _DTYPES[dtype]
    gc = bool(gradient_checkpointing) if gradient_checkpointing is not None else False
    return DevicePolicy(device=dev, dtype=dt, gradient_checkpointing=gc, threads=threads or cpu_count or 1)


def resolve_device(device: str = "auto", dtype: str = "auto", gradient_checkpointing: bool | None = None,
                   threads: int = 0, apply: bool = True) -> DevicePolicy:
    """Pick device, dtype and checkpointing for this machine; with apply=True also set torch's
    thread count (CPU) or current device (CUDA)."""
    cuda = torch.cuda.is_available()
    policy = plan_device(device, dtype, gradient_checkpointing, threads, cuda_available=cuda,
                         bf16_supported=cuda and torch.cuda.is_bf16_supported(), cpu_count=os.cpu_count() or 1,
                         local_rank=os.environ.get("LOCAL_RANK"))
    if apply and policy.device.type == "cpu":
        torch.set_num_threads(policy.threads)
    if apply and policy.device.type == "cuda" and policy.device.index is not None:
        torch.cuda.set_device(policy.device)
    return policy


def policy_from_config(cfg) -> DevicePolicy:
    """The policy for a stage config that carries the RuntimeConfig fields."""
    return resolve_device(cfg.device, cfg.dtype, cfg.gradient_checkpointing, cfg.threads)
