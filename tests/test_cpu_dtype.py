"""The CPU half of the device policy: bf16 autocast under `--dtype auto` only where the probe
measured it clearly faster, the probe skipped without bf16 instructions, and the demo's base
pretraining under bf16 autocast keeping its fp32 master weights."""
from __future__ import annotations

import pytest
import torch

from core.device import CPU_BF16_MAX_RATIO, cpu_bf16_ratio, cpu_flags, plan_device

CPU = dict(cuda_available=False, bf16_supported=False, cpu_count=2)


@pytest.mark.parametrize("ratio, dtype", [(None, torch.float32), (0.45, torch.bfloat16),
                                          (CPU_BF16_MAX_RATIO, torch.bfloat16), (0.76, torch.float32),
                                          (1.3, torch.float32), (120.0, torch.float32)])
def test_auto_on_cpu_follows_the_probe(ratio, dtype):
    assert CPU_BF16_MAX_RATIO == 0.75
    for device in ("auto", "cpu"):
        assert plan_device(device, "auto", cpu_bf16_ratio=ratio, **CPU).dtype == dtype


def test_explicit_dtype_and_cuda_ignore_the_cpu_probe():
    assert plan_device("cpu", "float32", cpu_bf16_ratio=0.4, **CPU).dtype == torch.float32
    assert plan_device("cpu", "bfloat16", cpu_bf16_ratio=3.0, **CPU).dtype == torch.bfloat16
    gpu = plan_device("auto", "auto", cpu_bf16_ratio=5.0, cuda_available=True, bf16_supported=False, cpu_count=2)
    assert gpu.fp16


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx512f avx512_bf16\n"
                    "processor\t: 1\nflags\t\t: fpu sse2 avx512f avx512_bf16\n")
    assert cpu_flags(str(info)) == {"fpu", "sse2", "avx512f", "avx512_bf16"}
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_no_probe_without_bf16_instructions(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("timed a probe on a CPU without bf16 instructions")

    monkeypatch.setattr("core.device._timed_step", fail)
    assert cpu_bf16_ratio(frozenset({"avx2", "avx512f"})) is None


def test_probe_times_both_and_restores_threads(monkeypatch):
    seconds = {torch.bfloat16: [0.9, 0.2, 0.3, 0.25, 0.4, 0.3, 0.5, 0.3, 0.3, 0.3],
               torch.float32: [0.05, 0.8, 0.5, 0.6, 0.55, 0.5, 0.7, 0.5, 0.52, 0.5]}
    threads = []  # during each timed step: one thread, whatever the run uses (a loaded machine's
    # multi-threaded probe waits for its slowest thread, see core/device.py)

    def step(x, w, dtype):
        threads.append(torch.get_num_threads())
        return seconds[dtype].pop(0)

    monkeypatch.setattr("core.device._timed_step", step)
    torch.set_num_threads(2)
    before = torch.get_num_threads()
    # warm-ups (the first two) ignored: best bf16 0.25, best fp32 0.5
    assert cpu_bf16_ratio.__wrapped__(frozenset({"amx_bf16"})) == pytest.approx(0.5)
    assert threads == [1] * 20
    assert torch.get_num_threads() == before
    assert seconds == {torch.bfloat16: [], torch.float32: []}


def test_pretraining_under_bf16_autocast_keeps_fp32_weights():
    from demo.pretrain import build_model, train_loop
    from demo.tokenizer import train_tokenizer

    tok = train_tokenizer([f"Shop {i} opens at {i % 12} am." for i in range(60)], vocab_size=300)
    blocks = torch.randint(3, len(tok), (16, 32), generator=torch.Generator().manual_seed(0))
    runs = {}
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        model = build_model(tok, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
                            max_positions=64)
        losses, tokens, _ = train_loop(model, blocks, batch_size=4, max_steps=3, lr=1e-3, warmup_steps=1,
                                       weight_decay=0.1, seed=0, progress=False, dtype=dtype)
        assert tokens == 3 * 4 * 32
        assert all(p.dtype == torch.float32 for p in model.parameters())
        runs[dtype] = losses
    fp32, bf16 = runs[torch.float32], runs[torch.bfloat16]
    # the same weights and batches: the first losses differ only by the forward's precision
    assert fp32[0] != bf16[0] and abs(fp32[0] - bf16[0]) < 0.05


def test_demo_base_keeps_fp32_unless_a_dtype_is_asked_for():
    """bf16 autocast cost the demo base held-out loss (0.451 -> 0.496 at 440 steps), so its stage
    default is float32; `rlhf demo --dtype auto` leaves it, an explicit dtype reaches it."""
    from demo.config import BaseConfig, DemoConfig, SimulatedRoundConfig
    from demo.pipeline import _own_config

    assert _own_config(BaseConfig, "base", DemoConfig()).dtype == "float32"
    assert _own_config(BaseConfig, "base", DemoConfig(dtype="bfloat16")).dtype == "bfloat16"
    assert _own_config(BaseConfig, "base", DemoConfig(dtype="float32")).dtype == "float32"
    assert _own_config(SimulatedRoundConfig, "collect", DemoConfig()).dtype == "auto"
