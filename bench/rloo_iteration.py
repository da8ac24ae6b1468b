"""RLOO's side of bench/ppo_throughput.py: one RLOO iteration of our loop (rl/rloo.py) on the
same model, prompts and reward as the PPO iteration there, and the same work in TRL's
RLOOTrainer (--trl), each timed, and in a fresh subprocess for peak RSS.

Sizes: the PPO iteration samples batch_size prompts once; RLOO samples batch_size / k prompts k
times, so both score, compare and train on batch_size responses of up to max_new_tokens.
"""
from __future__ import annotations

import tempfile
import time


def rloo_cfg(args):
    from core.config import RLOOConfig, load_config

    return load_config(RLOOConfig, None, dict(batch_size=args.batch_size // args.rloo_k, num_generations=args.rloo_k,
                                              mini_batch_size=args.mini_batch_size, max_new_tokens=args.max_new_tokens,
                                              temperature=0.7, lora_r=16, lora_alpha=32, lora_dropout=0.0,
                                              threads=args.threads))


def load_rloo_model(args, cfg, tok):
    from core.device import resolve_device
    from core.models import lora_config
    from rl.ppo_model import build_actor_critic

    return build_actor_critic(args.model, args.adapter, tok, resolve_device("cpu", threads=args.threads),
                              lora_config(cfg), seed=0, value=False)


def prepare(ac, cfg):
    from rl.pg_loop import make_accelerator
    from rl.rloo import make_optimizer

    acc = make_accelerator(cpu=True)
    model, opt = acc.prepare(ac, make_optimizer(ac, cfg))
    return model, opt, acc


def iteration(ac, model, opt, acc, tok, prompts, reward_fn, cfg) -> dict[str, float]:
    """One RLOO iteration's seconds: generate / score / forward (rl.rollout) and train."""
    from rl.rloo import rloo_experience, rloo_update

    rollout = rloo_experience(ac, tok, prompts[: cfg.batch_size], reward_fn, cfg, kl_coef=0.1)
    t0 = time.perf_counter()
    rloo_update(model, opt, acc, rollout, cfg)
    return {**rollout.seconds, "train": time.perf_counter() - t0}


def ours_probe(args, tok, prompts, reward_fn) -> None:
    """The memory probe's work: one RLOO iteration."""
    cfg = rloo_cfg(args)
    ac = load_rloo_model(args, cfg, tok)
    iteration(ac, *prepare(ac, cfg), tok, prompts, reward_fn, cfg)


def trl_iterations(args, prompts, reward_fn, steps: int) -> list[float]:
    """Seconds of each of `steps` RLOOTrainer steps on the same work: the SFT adapter as a
    trainable PeftModel (TRL copies it into a frozen "ref" adapter: the reference is the SFT
    policy, as ours), the reward as a callable, batch_size responses = batch_size / k prompts × k,
    one optimizer step per generation (steps_per_generation 1, num_iterations 1)."""
    from datasets import Dataset
    from peft import PeftModel
    from transformers import TrainerCallback
    from trl import RLOOConfig, RLOOTrainer

    from core.device import resolve_device
    from core.models import load_causal_lm, load_tokenizer

    tok = load_tokenizer(args.model)
    base = load_causal_lm(args.model, resolve_device("cpu", threads=args.threads), tok)
    policy = PeftModel.from_pretrained(base, str(args.adapter), is_trainable=True)
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **kw):
            times.append(time.perf_counter() - self.t0)

    def reward(prompts, completions, **kw):
        return reward_fn(prompts, completions)

    with tempfile.TemporaryDirectory() as out:
        cfg = RLOOConfig(output_dir=out, per_device_train_batch_size=args.batch_size, num_generations=args.rloo_k,
                         max_completion_length=args.max_new_tokens, temperature=0.7, top_k=0, beta=0.1,
                         learning_rate=2e-5, max_steps=steps, logging_steps=1, report_to=[], save_strategy="no",
                         use_cpu=True, bf16=False, steps_per_generation=1, num_iterations=1,
                         dataloader_num_workers=0, disable_tqdm=True, seed=0,
                         activation_checkpointing=False)  # TRL turns it on by default; our CPU policy has it off
        data = Dataset.from_dict({"prompt": prompts * (steps + 1)})
        trainer = RLOOTrainer(model=policy, reward_funcs=reward, args=cfg, train_dataset=data,
                              processing_class=tok, callbacks=[Clock()])
        trainer.train()
    return times


def trl_probe(args, prompts, reward_fn) -> None:
    trl_iterations(args, prompts, reward_fn, steps=1)


def best_of(times: list[float]) -> float:
    return min(times) if times else float("nan")


def versus_ppo(args, best: dict, mem_ppo: dict, mem_rloo: dict, prompts, reward_fn, run_probe) -> dict:
    """RLOO's iteration against PPO's (seconds and peak RSS), and TRL's RLOOTrainer with --trl."""
    parts = ("generate", "score", "forward", "train")
    ppo_s, rloo_s = sum(best[f"{k}_s"] for k in parts), sum(best[f"rloo_{k}_s"] for k in parts)
    out = {"ppo_iteration_s": round(ppo_s, 4), "rloo_iteration_s": round(rloo_s, 4),
           "rloo_vs_ppo_time": round(rloo_s / ppo_s, 3), "peak_rss_delta_mb_rloo": round(mem_rloo["delta_mb"], 1),
           "rloo_vs_ppo_peak_rss": round(mem_rloo["delta_mb"] / mem_ppo["delta_mb"], 3)}
    if args.trl:
        times = trl_iterations(args, prompts[: args.batch_size // args.rloo_k], reward_fn, steps=args.repeats + 1)
        mem_trl = run_probe(args, "trl")
        out.update({"trl_rloo_step_s": round(best_of(times[1:]), 4),
                    "trl_vs_ours_time": round(best_of(times[1:]) / rloo_s, 3),
                    "peak_rss_delta_mb_trl_rloo": round(mem_trl["delta_mb"], 1)})
    return out
