"""Device policy: measured, not assumed.

On the CPU machines this was first measured on, bf16 matmul ran ~120x slower than fp32, and TRL's
default SFT config (bf16 autocast + gradient checkpointing) ran 16.6x slower than a plain torch
loop on the tiny model; with fp32 and no checkpointing, 1.1x. CPUs differ: on an AMD EPYC with
avx512_bf16, bf16 matmul ran 2.5x faster than fp32 and TRL's defaults only 1.7x slower than our
stage (bench/cpu_bf16_matmul.py, bench/sft_throughput.py). So on the CPU `--dtype auto` asks the
machine: where /proc/cpuinfo lists avx512_bf16 or amx_bf16, a probe (`cpu_bf16_ratio`, ~0.1 s,
once per process) times a forward and backward matmul of the demo model's MLP shape under bf16
autocast against fp32 on one thread, and bf16 autocast is chosen when it took at most
CPU_BF16_MAX_RATIO of fp32's time (0.53-0.55 over five probes on an EPYC with avx512_bf16; 0.31-0.39
on a 2-core Xeon with AMX, idle or with four busy processes beside it). One thread, because the
ratio is a property of the instructions, and on a loaded machine a multi-threaded probe waits for
its slowest thread: with two threads beside two busy processes the Xeon's ratio read 0.21-1.68,
and the same command trained in bf16 one time and fp32 the next. Measured there on the demo: SFT 0.89x the time with
the same validation loss and fact accuracy; base pretraining 0.77x the time but held-out loss
0.496 instead of 0.451, so the demo's base keeps float32 (demo/config.py). Without those flags
no probe runs and fp32 is kept: never the slow case. Master weights stay fp32 on the CPU either
way (core/models.py); bf16 is autocast only.
  CUDA → bf16 (fp16 where bf16 is missing), gradient checkpointing only on request;
  CPU  → bf16 autocast where the probe finds it faster, else fp32; no checkpointing (it trades
         compute for memory we don't lack), threads = cores.
Each choice can be overridden from the stage config.
"""
from __future__ import annotations

import functools
import os
import time
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


# bf16 autocast on the CPU when its probe took at most this share of fp32's time: a clear win only,
# so a noisy probe on a loaded machine does not choose bf16 for a marginal gain
CPU_BF16_MAX_RATIO = 0.75
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def plan_device(device: str = "auto", dtype: str = "auto", gradient_checkpointing: bool | None = None,
                threads: int = 0, *, cuda_available: bool, bf16_supported: bool, cpu_count: int,
                local_rank: str | None = None, cpu_bf16_ratio: float | None = None) -> DevicePolicy:
    """The device policy for a described machine: a pure function of the stage's settings and the
    machine's facts (CUDA present, bf16 supported, CPU cores, the launcher's LOCAL_RANK, the CPU's
    bf16/fp32 time ratio from `cpu_bf16_ratio`, None where not measured), so GPU recipes can be
    checked on a machine without a GPU. `resolve_device` passes the real facts."""
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
            faster = cpu_bf16_ratio is not None and cpu_bf16_ratio <= CPU_BF16_MAX_RATIO
            dt = torch.bfloat16 if faster else torch.float32
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
    on_cpu = device == "cpu" or (device == "auto" and not cuda)
    ratio = cpu_bf16_ratio(cpu_flags()) if on_cpu and dtype == "auto" else None
    policy = plan_device(device, dtype, gradient_checkpointing, threads, cuda_available=cuda,
                         bf16_supported=cuda and torch.cuda.is_bf16_supported(), cpu_count=os.cpu_count() or 1,
                         local_rank=os.environ.get("LOCAL_RANK"), cpu_bf16_ratio=ratio)
    if apply and policy.device.type == "cpu":
        torch.set_num_threads(policy.threads)
    if apply and policy.device.type == "cuda" and policy.device.index is not None:
        torch.cuda.set_device(policy.device)
    return policy


def policy_from_config(cfg) -> DevicePolicy:
    """The policy for a stage config that carries the RuntimeConfig fields."""
    return resolve_device(cfg.device, cfg.dtype, cfg.gradient_checkpointing, cfg.threads)


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's instruction-set flags (Linux); empty where the file is missing."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.cache
def cpu_bf16_ratio(flags: frozenset[str]) -> float | None:
    """bf16-autocast time / fp32 time of a forward and backward matmul of the demo model's MLP shape
    (2048 tokens x 256 -> 704) on one thread (see the module doc), each the best of 8 after two
    warm-ups; None without bf16 instructions (no probe: bf16 is emulated and far slower there).
    Once per process."""
    if not any(f in flags for f in CPU_BF16_FLAGS):
        return None
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(2048, 256, generator=gen)
        w = torch.randn(704, 256, generator=gen, requires_grad=True)
        best = {torch.bfloat16: float("inf"), torch.float32: float("inf")}
        for i in range(10):  # alternating, so a burst of load lands on both; the first two warm up
            for dtype in best:
                seconds = _timed_step(x, w, dtype)
                best[dtype] = min(best[dtype], seconds) if i >= 2 else best[dtype]
        return best[torch.bfloat16] / best[torch.float32]
    finally:
        torch.set_num_threads(before)


def _timed_step(x: torch.Tensor, w: torch.Tensor, dtype: torch.dtype) -> float:
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        y = torch.nn.functional.linear(x, w)
    y.float().sum().backward()
    w.grad = None
    return time.perf_counter() - start
