"""PPO throughput and memory: one iteration of our loop against plain baselines, in one run.

  split     one PPO iteration = generate / score / forward (policy, reference, value log-probs
            and values) / train (ppo_epochs x minibatches), seconds each
  generate  response tokens/s of our rollout sampler (KV cache) vs a plain `model.generate` on a
            base + SFT-adapter PeftModel (same prompts, seed and sampling settings; KV cache on),
            and the same plain call with use_cache=False for what the cache buys
  train     tokens/s of rl.ppo.ppo_update vs a plain PyTorch loop doing the same passes (policy
            forward + value forward, backward, clip, AdamW) on the same minibatches of the same
            rollout; goal >= 0.7x. Also a policy-only plain loop (no value pass) for context.
  memory    peak RSS of one iteration with policy + reference + value on one base, vs the same
            iteration's work with the policy alone (generate, log-probs, forward/backward/AdamW),
            each in a fresh subprocess, above the process's RSS after imports (glibc told to
            mmap allocations >= 64 KiB, so freed tensors leave RSS); goal <= 1.3x.
            Parameter bytes from rl.ppo_model.memory_report too.
  rloo      one RLOO iteration (bench/rloo_iteration.py: batch_size / k prompts sampled k times, so
            the same number of responses) against the PPO iteration: seconds and peak RSS, ratios;
            --trl adds the same RLOO work in TRL's RLOOTrainer (seconds per step, peak RSS).

Timings take the best of --repeats (the CPU is shared); our loop and its baseline alternate.
Without --model, a demo-size Llama (demo/config.py BaseConfig's shape, 4096-token BPE) with random
weights and a fresh LoRA r=16 "SFT" adapter is built in a temporary folder: random weights never
emit EOS, so every response runs to max_new_tokens (the worst case for generation). The score is
a synthetic word count unless --reward names a reward model directory.

    python bench/ppo_throughput.py [--model runs/demo/base --adapter runs/demo/sft] [--reward runs/demo/reward] [--trl]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import rloo_iteration  # noqa: E402 (bench/, beside this file)


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def rss_mb() -> float:
    return _status_mb("VmRSS:")


def peak_rss_mb() -> float:
    """VmHWM, this address space's peak. Not getrusage's ru_maxrss: Linux carries that across
    fork + exec, so a child of a big parent would report the parent's size."""
    return _status_mb("VmHWM:")


def build_random_model(out: Path) -> tuple[Path, Path]:
    """Demo-size random Llama + tokenizer (trained on the demo prompts) + a fresh LoRA adapter."""
    from peft import get_peft_model

    from core.config import SFTConfig
    from core.device import resolve_device
    from core.models import load_causal_lm, load_tokenizer, lora_config
    from demo.config import BaseConfig
    from demo.pretrain import build_model, save_model_dir
    from demo.tokenizer import train_tokenizer

    texts = [json.loads(x)["prompt"] for x in (ROOT / "runs/demo/data/prompts.jsonl").read_text().splitlines()] \
        if (ROOT / "runs/demo/data/prompts.jsonl").exists() else [f"When do you open on day {i}?" for i in range(500)]
    tok = train_tokenizer(texts * 4, vocab_size=4096)
    torch.manual_seed(0)
    c = BaseConfig()
    model = build_model(tok, hidden_size=c.hidden_size, num_layers=c.num_layers, num_heads=c.num_heads,
                        num_kv_heads=c.num_kv_heads, intermediate_size=c.intermediate_size, max_positions=512)
    save_model_dir(model, tok, out / "base", metrics={}, progress=False)
    tok = load_tokenizer(out / "base")
    sft = get_peft_model(load_causal_lm(out / "base", resolve_device("cpu", apply=False), tok),
                         lora_config(SFTConfig(lora_r=16, lora_alpha=32)))
    sft.save_pretrained(str(out / "sft"))
    return out / "base", out / "sft"


def bench_prompts(n: int) -> list[str]:
    f = ROOT / "runs/demo/data/prompts.jsonl"
    rows = [json.loads(x)["prompt"] for x in f.read_text().splitlines()] if f.exists() else []
    rows = rows or [f"Hello, when do you open on day {i}? I need a lamp." for i in range(n)]
    return (rows * (n // len(rows) + 1))[:n]


def make_cfg(args):
    from core.config import load_config
    from core.config import PPOConfig

    return load_config(PPOConfig, None, dict(batch_size=args.batch_size, mini_batch_size=args.mini_batch_size,
                                             max_new_tokens=args.max_new_tokens, ppo_epochs=args.ppo_epochs,
                                             temperature=0.7, lora_r=16, lora_alpha=32, lora_dropout=0.0,
                                             threads=args.threads))


def reward_function(args):
    if args.reward:
        from reward import load_scorer

        return load_scorer(args.reward, device="cpu").score
    return lambda prompts, responses: [float(r.count("the")) for r in responses]


def load_ac(args, cfg, tok):
    from core.device import resolve_device
    from core.models import lora_config
    from rl.ppo_model import build_actor_critic

    return build_actor_critic(args.model, args.adapter, tok, resolve_device("cpu", threads=args.threads),
                              lora_config(cfg), seed=0)


def load_plain_policy(args, tok):
    from peft import PeftModel

    from core.device import resolve_device
    from core.models import load_causal_lm

    base = load_causal_lm(args.model, resolve_device("cpu", threads=args.threads), tok)
    return PeftModel.from_pretrained(base, str(args.adapter), is_trainable=True).eval()


# ---------------------------------------------------------------- generation

def plain_generate_tok_s(model, tok, prompts, cfg, use_cache: bool, seed: int) -> tuple[float, int]:
    from core.generation import encode_prompts

    enc = encode_prompts(tok, prompts, "cpu")
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    with torch.no_grad():
        seqs = model.generate(**enc, do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p, top_k=0,
                              max_new_tokens=cfg.max_new_tokens, pad_token_id=tok.pad_token_id,
                              eos_token_id=tok.eos_token_id, use_cache=use_cache)
    seconds = time.perf_counter() - t0
    n = seqs[:, enc["input_ids"].shape[1]:].numel()  # generated positions, as for ours below
    return n / seconds, n


def ours_generate_tok_s(ac, tok, prompts, cfg, seed: int) -> tuple[float, int]:
    from rl.rollout import sample

    torch.manual_seed(seed)
    t0 = time.perf_counter()
    s = sample(ac, tok, prompts, cfg)
    seconds = time.perf_counter() - t0
    n = s["response_ids"].numel()
    return n / seconds, n


# ---------------------------------------------------------------- training

def minibatches(rollout, cfg, seed: int):
    from rl.pg_loop import minibatch

    g = torch.Generator().manual_seed(seed)
    B = rollout.input_ids.shape[0]
    for _ in range(cfg.ppo_epochs):
        order = torch.randperm(B, generator=g)
        for s in range(0, B, cfg.mini_batch_size):
            yield minibatch(rollout, order[s:s + cfg.mini_batch_size]) + (order[s:s + cfg.mini_batch_size],)


def plain_train_tok_s(model, rollout, cfg, with_value: bool = True) -> float:
    """Forward (policy logits [+ values]), a plain loss, backward, clip, AdamW: the floor any PPO
    loop pays for the same passes on the same minibatches."""
    from core.logps import token_logps

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    tokens, t0 = 0, time.perf_counter()
    for seq, n, idx in minibatches(rollout, cfg, seed=0):
        mask = rollout.response_mask[idx, :n].float()
        args = (seq["input_ids"], seq["attention_mask"], seq["position_ids"], n)
        logps = token_logps(model.logits(*args), rollout.response_ids[idx, :n], mask, cfg.temperature)
        loss = -(logps * rollout.advantages[idx, :n]).sum() / mask.sum()
        if with_value:
            loss = loss + ((model.values(*args) - rollout.returns[idx, :n]) ** 2 * mask).sum() / mask.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += int(seq["attention_mask"].sum())
    return tokens / (time.perf_counter() - t0)


def ours_train_tok_s(model, opt, acc, rollout, cfg) -> tuple[float, float]:
    from rl.ppo import ppo_update

    tokens = cfg.ppo_epochs * int(rollout.attention_mask.sum())  # trimming drops padding columns only
    t0 = time.perf_counter()
    ppo_update(model, opt, acc, rollout, cfg)
    seconds = time.perf_counter() - t0
    return tokens / seconds, seconds


# ---------------------------------------------------------------- memory (subprocesses)

def memory_probe(args) -> dict:
    """One iteration's work in this fresh process; peak RSS above the RSS after imports."""
    from core.models import load_tokenizer
    from rl.pg_loop import make_accelerator
    from rl.ppo import make_optimizer, ppo_update
    from rl.rollout import make_experience

    cfg, prompts = make_cfg(args), bench_prompts(args.batch_size)
    tok = load_tokenizer(args.model)
    _import_everything()
    start = rss_mb()
    torch.manual_seed(0)
    if args.memory_probe in ("rloo", "trl"):
        if args.memory_probe == "rloo":
            rloo_iteration.ours_probe(args, tok, prompts, reward_function(args))
        else:
            rloo_iteration.trl_probe(args, prompts[: args.batch_size // args.rloo_k], reward_function(args))
    elif args.memory_probe == "ppo":
        ac = load_ac(args, cfg, tok)
        acc = make_accelerator(cpu=True)
        model, opt = acc.prepare(ac, make_optimizer(ac, cfg))
        ppo_update(model, opt, acc, make_experience(ac, tok, prompts, reward_function(args), cfg, 0.1), cfg)
    else:  # the policy alone: sample, log-probs, then forward/backward/AdamW of the policy only
        from core.logps import token_logps
        from rl.rollout import sample

        policy = load_plain_policy(args, tok)
        s = sample(_PolicyOnly(policy), tok, prompts, cfg)
        n = s["response_ids"].shape[1]
        seq = (s["input_ids"], s["attention_mask"], s["position_ids"])
        with torch.no_grad():
            old = token_logps(_logits(policy, *seq, n), s["response_ids"], s["response_mask"], cfg.temperature)
        opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-5)
        for _ in range(cfg.ppo_epochs):
            for i in range(0, len(prompts), cfg.mini_batch_size):
                sl = slice(i, i + cfg.mini_batch_size)
                logps = token_logps(_logits(policy, *(t[sl] for t in seq), n), s["response_ids"][sl],
                                    s["response_mask"][sl], cfg.temperature)
                (-(logps - old[sl]).exp().mean()).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
    return {"probe": args.memory_probe, "peak_mb": peak_rss_mb(), "start_mb": start,
            "delta_mb": peak_rss_mb() - start}


def _import_everything() -> None:
    """Load every library the probe's work will touch (and start torch's thread pool), so the
    baseline RSS already holds the ~0.5 GB of imported code and the delta is models + work."""
    import peft.tuners.lora  # noqa: F401
    import transformers.generation.utils  # noqa: F401
    from accelerate import Accelerator
    from transformers import LlamaForCausalLM  # noqa: F401

    Accelerator(cpu=True)
    torch.ones(64, 64) @ torch.ones(64, 64)


class _PolicyOnly(torch.nn.Module):
    """rl.rollout.sample calls model.generate; a PeftModel already has it, this only wraps."""

    def __init__(self, policy):
        super().__init__()
        self.policy = policy

    def generate(self, **kw):
        return self.policy.generate(**kw)


def _logits(policy, input_ids, attention_mask, position_ids, n):
    return policy(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                  logits_to_keep=n + 1, use_cache=False).logits[:, :-1]


def run_probe(args, mode: str) -> dict:
    cmd = [sys.executable, __file__, "--memory-probe", mode, "--model", str(args.model), "--adapter",
           str(args.adapter)] + [f"--{k}={getattr(args, k)}" for k in
                                 ("batch_size", "mini_batch_size", "max_new_tokens", "ppo_epochs", "threads",
                                  "rloo_k")]
    if args.reward:
        cmd += ["--reward", args.reward]
    # Large allocations through mmap are returned to the OS when freed, so RSS follows the live
    # tensors; with glibc's default threshold, freed activations stay resident and the peak
    # measures allocator history (pass order, fragmentation) more than what is alive at once.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": str(args.threads)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- main

def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="", help="base model directory ('' = a random demo-size model)")
    ap.add_argument("--adapter", default="", help="SFT adapter directory")
    ap.add_argument("--reward", default="", help="reward model directory ('' = a synthetic word count)")
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--mini_batch_size", type=int, default=8)
    ap.add_argument("--max_new_tokens", type=int, default=64)
    ap.add_argument("--ppo_epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rloo_k", type=int, default=4, help="RLOO samples per prompt (batch_size / k prompts)")
    ap.add_argument("--trl", action="store_true", help="also time TRL's RLOOTrainer on the same work")
    ap.add_argument("--memory-probe", dest="memory_probe", default="", help=argparse.SUPPRESS)
    return ap.parse_args()


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_probe:
        print(json.dumps(memory_probe(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        if not args.model:
            print("[bench] no --model: building a random demo-size model (responses run to max_new_tokens)")
            args.model, args.adapter = build_random_model(Path(tmp))
        elif not args.adapter:
            raise SystemExit("--adapter (the SFT adapter) is required with --model")
        result = run(args)
    print(json.dumps(result))


def run(args) -> dict:
    from core.models import load_tokenizer
    from rl.pg_loop import make_accelerator
    from rl.ppo import make_optimizer
    from rl.ppo_model import memory_report
    from rl.rollout import make_experience

    cfg, prompts, reward_fn = make_cfg(args), bench_prompts(args.batch_size), reward_function(args)
    tok = load_tokenizer(args.model)
    ac, plain = load_ac(args, cfg, tok), load_plain_policy(args, tok)
    acc = make_accelerator(cpu=True)
    model, opt = acc.prepare(ac, make_optimizer(ac, cfg))
    rcfg = rloo_iteration.rloo_cfg(args)
    rloo_ac = rloo_iteration.load_rloo_model(args, rcfg, tok)
    rloo_parts = rloo_iteration.prepare(rloo_ac, rcfg)
    best: dict[str, float] = {}

    def keep(key, value, better=max):
        best[key] = better(best.get(key, value), value)

    for rep in range(args.repeats):
        torch.manual_seed(rep)
        rollout = make_experience(ac, tok, prompts, reward_fn, cfg, kl_coef=0.1)
        ours_train, train_s = ours_train_tok_s(model, opt, acc, rollout, cfg)
        for k, v in {**rollout.seconds, "train": train_s}.items():
            keep(f"{k}_s", v, min)
        keep("train_ours_tok_s", ours_train)
        keep("train_plain_tok_s", plain_train_tok_s(ac, rollout, cfg))
        keep("train_plain_policy_only_tok_s", plain_train_tok_s(ac, rollout, cfg, with_value=False))
        keep("gen_ours_tok_s", ours_generate_tok_s(ac, tok, prompts, cfg, seed=rep)[0])
        keep("gen_plain_tok_s", plain_generate_tok_s(plain, tok, prompts, cfg, True, seed=rep)[0])
        torch.manual_seed(rep)
        for k, v in rloo_iteration.iteration(rloo_ac, *rloo_parts, tok, prompts, reward_fn, rcfg).items():
            keep(f"rloo_{k}_s", v, min)
    best["gen_plain_no_cache_tok_s"] = plain_generate_tok_s(plain, tok, prompts, cfg, False, seed=0)[0]
    mem_ppo, mem_policy, mem_rloo = run_probe(args, "ppo"), run_probe(args, "policy"), run_probe(args, "rloo")
    params = memory_report(ac)
    result = {**{k: round(v, 4 if k.endswith("_s") else 1) for k, v in best.items()},
              "train_ours_vs_plain": round(best["train_ours_tok_s"] / best["train_plain_tok_s"], 3),
              "gen_ours_vs_plain": round(best["gen_ours_tok_s"] / best["gen_plain_tok_s"], 3),
              "gen_cache_speedup": round(best["gen_plain_tok_s"] / best["gen_plain_no_cache_tok_s"], 2),
              "peak_rss_delta_mb_ppo": round(mem_ppo["delta_mb"], 1),
              "peak_rss_delta_mb_policy_alone": round(mem_policy["delta_mb"], 1),
              "peak_rss_ratio": round(mem_ppo["delta_mb"] / mem_policy["delta_mb"], 3),
              "peak_rss_total_ratio": round(mem_ppo["peak_mb"] / mem_policy["peak_mb"], 3),
              "param_bytes_ratio": params["ratio_vs_policy_alone"],
              "param_bytes_three_copies_ratio": round((3 * params["base"] + params["policy"] + params["ref"]
                                                       + params["value"] + params["value_head"])
                                                      / (params["base"] + params["policy"]), 3),
              **rloo_iteration.versus_ppo(args, best, mem_ppo, mem_rloo, prompts, reward_fn, run_probe),
              "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens, "threads": args.threads,
              "repeats": args.repeats, "model": str(args.model)}
    iteration = sum(best[f"{k}_s"] for k in ("generate", "score", "forward", "train"))
    print(f"one PPO iteration (best of {args.repeats}): " + " | ".join(
        f"{k} {best[f'{k}_s']:.2f}s ({100 * best[f'{k}_s'] / iteration:.0f}%)" for k in ("generate", "score", "forward", "train")))
    print(f"generation: ours {best['gen_ours_tok_s']:,.0f} tok/s | plain generate {best['gen_plain_tok_s']:,.0f} tok/s "
          f"(ratio {result['gen_ours_vs_plain']}) | plain without KV cache {best['gen_plain_no_cache_tok_s']:,.0f} tok/s")
    print(f"training: ours {best['train_ours_tok_s']:,.0f} tok/s | plain loop {best['train_plain_tok_s']:,.0f} tok/s "
          f"-> {result['train_ours_vs_plain']}x (goal >= 0.7) | plain policy-only {best['train_plain_policy_only_tok_s']:,.0f} tok/s")
    print(f"memory: peak RSS above imports, PPO {mem_ppo['delta_mb']:.0f} MB vs policy alone {mem_policy['delta_mb']:.0f} MB "
          f"-> {result['peak_rss_ratio']}x (goal <= 1.3); whole process {result['peak_rss_total_ratio']}x; "
          f"parameter bytes {params['ratio_vs_policy_alone']}x (three model copies would be 3x)")
    print(f"RLOO (k={args.rloo_k}, same {args.batch_size} responses): iteration {result['rloo_iteration_s']:.2f}s vs "
          f"PPO {result['ppo_iteration_s']:.2f}s -> {result['rloo_vs_ppo_time']}x; peak RSS above imports "
          f"{result['peak_rss_delta_mb_rloo']:.0f} MB vs PPO {mem_ppo['delta_mb']:.0f} MB -> "
          f"{result['rloo_vs_ppo_peak_rss']}x" + (f"; TRL RLOOTrainer {result['trl_rloo_step_s']:.2f}s per step, "
                                                  f"{result['peak_rss_delta_mb_trl_rloo']:.0f} MB" if args.trl else ""))
    return result


if __name__ == "__main__":
    main()
