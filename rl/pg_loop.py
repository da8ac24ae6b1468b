"""The loop PPO (rl/ppo.py) and RLOO (rl/rloo.py) share: sample → watchdog → checkpoint → update.

run(cfg, algo) reads top to bottom: seed → device + accelerator → tokenizer → policy and reference
(and PPO's value function) on one base (rl/ppo_model.py) → prompts + reward function → resume →
loop → save + run card. An `Algo` says what differs: how a rollout gets its advantages and how the
update uses them.

One iteration:  rollout (rl/rollout.py) → watchdog (rl/watchdog.py) → checkpoint every save_steps
→ the algorithm's update → KL controller → log.

- A checkpoint is taken right after a rollout passed the watchdog, before the update: every
  checkpoint on disk is a state whose KL and length were measured and found good, so a trip
  rolls back to the newest one. It holds the trained adapters (and head), the optimizer, the KL
  coefficient, the logged history (the watchdog's baseline) and the step.
- No generator state is stored: each iteration reseeds torch from (seed, step, rank) and picks
  its prompts from the same triple, so a resumed run reproduces the uninterrupted one exactly.
- Multi-process (accelerate launch): each process samples its own prompts; gradients are averaged
  by DDP; metrics, the KL controller and the watchdog use values gathered from every process, so
  all processes take the same decisions and end with the same weights.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from core import checkpoints
from core.config import ConfigError, SampledRLFields, UserError, tokenizer_fixes
from core.device import policy_from_config
from core.io import append_jsonl
from core.models import count_parameters, load_tokenizer, lora_config, preflight
from core.policies import base_dir
from core.runcard import data_info, write_run_card
from core.training import check_launch, weights_sha256
from rl import heldout, watchdog
from rl.pg_inputs import load_reward_fn, load_train_prompts, prompt_batch, step_seed, total_iterations
from rl.ppo_math import AdaptiveKLController, FixedKLController
from rl.ppo_model import build_actor_critic, memory_report, save_policy_and_value
from rl.rollout import Rollout, per_sample, sample_metrics


@dataclass(frozen=True)
class Algo:
    """What one algorithm plugs into the loop."""
    name: str  # the stage: log prefix, <run>/<name>, run-card stage
    value: bool  # whether the model has a value function (rl.ppo_model)
    optimizer: Callable  # (model, cfg) -> torch.optim.Optimizer
    experience: Callable  # (model, tok, prompts, reward_fn, cfg, kl_coef) -> Rollout with advantages
    update: Callable  # (model, optimizer, accelerator, rollout, cfg) -> {metric: float}
    metrics: Callable  # (accelerator, rollout) -> {metric: float}, gathered from every process
    describe: Callable  # cfg -> the run card's sentence on what was trained and how


def resolve_paths(cfg: SampledRLFields, stage: str) -> dict[str, Path]:
    run = Path(cfg.run)
    return {"base": Path(cfg.model) if cfg.model else base_dir(run),
            "sft": Path(cfg.sft) if cfg.sft else run / "sft",
            "init": Path(cfg.init) if cfg.init else Path(cfg.sft) if cfg.sft else run / "sft",
            "reward": Path(cfg.reward) if cfg.reward else run / "reward",
            "prompts": Path(cfg.prompts) if cfg.prompts else run / "data" / "prompts.jsonl",
            "out": Path(cfg.out) if cfg.out else run / stage}


def check_config(cfg: SampledRLFields) -> None:
    """The shared options; each algorithm checks its own on top."""
    if cfg.kl_estimator not in ("k1", "k2", "k3"):
        raise ConfigError(f"kl_estimator must be k1 or k3 (or k2), got {cfg.kl_estimator!r}")
    if cfg.missing_eos_mode not in ("subtract", "replace"):
        raise ConfigError(f"missing_eos_mode must be subtract or replace, got {cfg.missing_eos_mode!r}")
    if cfg.temperature <= 0:
        raise ConfigError("temperature must be > 0: rollouts sample, and log-probs use logits / temperature")
    if cfg.val_prompts < 0 or cfg.eval_steps < 1:
        raise ConfigError(f"val_prompts must be >= 0 and eval_steps >= 1, got {cfg.val_prompts} and {cfg.eval_steps}")
    if cfg.max_steps < 0 and cfg.num_epochs <= 0:
        raise ConfigError(f"num_epochs must be > 0 when max_steps is -1, got {cfg.num_epochs}")
    if cfg.save_steps < 1 or cfg.save_total_limit < 1:
        raise ConfigError("save_steps and save_total_limit must be >= 1 (checkpoints are the rollback points)")


def make_accelerator(cpu: bool):
    """DDP must accept a forward that uses only some parameters: PPO's policy pass leaves the value
    adapter unused and the value pass the policy adapter (rl.ppo.ppo_update)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, DistributedType

    acc = Accelerator(cpu=cpu, kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    if acc.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP):
        raise UserError(f"PPO and RLOO run on one device or under DDP (configs/accelerate/multi_gpu.yaml), not "
                        f"{acc.distributed_type.value}: rollouts sample from the whole policy, and the loop "
                        "steps its optimizer itself. Launch it with the multi_gpu config.")
    return acc


def make_kl_controller(cfg: SampledRLFields):
    if cfg.adaptive_kl:
        return AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon)
    return FixedKLController(cfg.kl_coef)


def minibatch(r: Rollout, idx: torch.Tensor) -> tuple[dict, int]:
    """Rows `idx` of a rollout, trimmed to the columns they use: prompt padding no row of the
    minibatch needs, and response columns past its longest response. Positions are unchanged."""
    n = int(r.response_mask[idx].sum(-1).max())
    prompt_len = r.input_ids.shape[1] - r.response_ids.shape[1]
    attn = r.attention_mask[idx]
    first = int(torch.nonzero(attn[:, :prompt_len].any(0))[0])
    cols = slice(first, prompt_len + n)
    seq = {"input_ids": r.input_ids[idx, cols], "attention_mask": attn[:, cols],
           "position_ids": r.position_ids[idx, cols], "n_response": n}
    return seq, n


def minibatches(r: Rollout, epochs: int, size: int):
    """`epochs` passes over the rollout in shuffled minibatches of `size` rows: yields (rows, the
    trimmed sequence tensors for the model, the number of response columns kept)."""
    B = r.input_ids.shape[0]
    for _ in range(epochs):
        order = torch.randperm(B)
        for start in range(0, B, size):
            idx = order[start:start + size].to(r.input_ids.device)
            yield (idx, *minibatch(r, idx))


def optimizer_step(accelerator, optimizer, max_grad_norm: float) -> torch.Tensor:
    """Clip the gradient of every parameter the optimizer holds, step, clear; the norm before clipping."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    grad_norm = accelerator.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


def mean_stats(accelerator, stats: dict[str, list], device) -> dict[str, float]:
    """Each metric's mean over this process's minibatches, then over the processes."""
    local = torch.tensor([sum(float(x) for x in v) / len(v) for v in stats.values()], device=device)
    return dict(zip(stats, accelerator.reduce(local, "mean").tolist()))


def sample_stats(accelerator, r: Rollout) -> dict:
    """Per-response statistics gathered from every process (rl.rollout.sample_metrics)."""
    return sample_metrics(accelerator.gather(per_sample(r)))


# ---------------------------------------------------------------- checkpoints

def save_checkpoint(out: Path, step: int, model, optimizer, kl_ctl, history: list[dict], keep: int) -> None:
    checkpoints.save(out / "checkpoints", step, {"trainable": model.trainable_state(),
                                                 "optimizer": optimizer.state_dict(), "kl_coef": kl_ctl.value,
                                                 "history": history}, keep)


def load_checkpoint(path: Path, model, optimizer, kl_ctl) -> tuple[int, list[dict]]:
    state = checkpoints.load(path, map_location=next(model.parameters()).device)
    model.load_trainable_state(state["trainable"])
    optimizer.load_state_dict(state["optimizer"])
    kl_ctl.value = state["kl_coef"]
    return state["step"], state["history"]


def start_or_resume(cfg, out: Path, stage: str, accelerator, model, optimizer, kl_ctl) -> tuple[int, list[dict]]:
    """(first step, history): a fresh start clears old checkpoints and log; --resume loads the
    newest checkpoint and drops the log rows written after it (they will be written again)."""
    found = checkpoints.start_or_resume(out, cfg.resume, stage, main_process=accelerator.is_main_process,
                                        say=accelerator.print)
    accelerator.wait_for_everyone()
    return load_checkpoint(found, model, optimizer, kl_ctl) if found else (0, [])


# ---------------------------------------------------------------- loop

def train(algo: Algo, cfg, accelerator, model, optimizer, kl_ctl, tok, prompts, reward_fn, out: Path,
          start: int, history: list[dict], val: list | None = None) -> dict:
    """Iterations start..max_steps; returns the watchdog's verdict ({"tripped": False} or why).
    With held-out prompts `val`, the held-out objective (rl/heldout.py) every cfg.eval_steps."""
    from tqdm.auto import tqdm

    ac = accelerator.unwrap_model(model)
    rank, world = accelerator.process_index, accelerator.num_processes
    limits = watchdog.Limits.from_config(cfg)
    bar = tqdm(range(start, cfg.max_steps), initial=start, total=cfg.max_steps, desc=algo.name,
               disable=not accelerator.is_local_main_process)
    for step in bar:
        torch.manual_seed(step_seed(cfg.seed, step, rank))
        batch = prompt_batch(prompts, step, cfg.batch_size, rank, world, cfg.seed)
        rollout = algo.experience(ac, tok, batch, reward_fn, cfg, kl_ctl.value)
        roll = algo.metrics(accelerator, rollout)
        reason = watchdog.check(history, roll, limits)
        if reason:
            return rollback(algo.name, out, step, reason, ac, optimizer, kl_ctl, accelerator)
        if step % cfg.save_steps == 0:
            if accelerator.is_main_process:
                save_checkpoint(out, step, ac, optimizer, kl_ctl, history, cfg.save_total_limit)
            accelerator.wait_for_everyone()
        t0 = time.perf_counter()
        upd = algo.update(model, optimizer, accelerator, rollout, cfg)
        row = {"step": step + 1, "kl_coef": kl_ctl.value, **roll, **upd,
               **{f"{k}_s": round(v, 4) for k, v in rollout.seconds.items()},
               "train_s": round(time.perf_counter() - t0, 4)}
        kl_ctl.update(roll["kl"], n_steps=len(rollout.responses) * world)
        history.append(row)
        if accelerator.is_main_process:
            append_jsonl(out / "log.jsonl", row)
        bar.set_postfix(score=f"{roll['score']:.3f}", kl=f"{roll['kl']:.3f}", len=f"{roll['response_length']:.1f}",
                        eos=f"{roll['eos_rate']:.2f}", beta=f"{kl_ctl.value:.3f}")
        if val and (step + 1) % cfg.eval_steps == 0:
            held = heldout.evaluate(ac, tok, val, reward_fn, cfg)
            if accelerator.is_main_process:
                append_jsonl(out / "log.jsonl", {"step": step + 1, **held})
    return {"tripped": False}


def rollback(stage: str, out: Path, step: int, reason: str, model, optimizer, kl_ctl, accelerator) -> dict:
    """Stop: restore the newest checkpoint (a state the watchdog had passed) and say so."""
    ckpt = checkpoints.list_checkpoints(out / "checkpoints")[-1]
    good_step, _ = load_checkpoint(ckpt, model, optimizer, kl_ctl)
    msg = (f"WATCHDOG TRIPPED at step {step}: {reason}. Training stopped; the policy was rolled back to "
           f"the last good checkpoint (step {good_step}, {ckpt.name}) and that is what {out} holds.")
    accelerator.print(f"\n[{stage}] {msg}\n")
    return {"tripped": True, "step": step, "reason": reason, "rolled_back_to": good_step, "message": msg}


def summarize(history: list[dict], window: int) -> dict:
    """Start and end of the run (means over `window` iterations) for metrics.json. A run of fewer
    than 2 * window iterations takes half of them for each end, so that start and end never
    average the same iterations (a 2-iteration run: its first against its last)."""
    out: dict = {}
    if not history:
        return out
    window = max(1, min(window, len(history) // 2))
    for key in ("score", "rlhf_reward", "kl", "response_length", "eos_rate", "entropy"):
        for name, rows in (("start", history[:window]), ("end", history[-window:])):
            vals = [r[key] for r in rows if r.get(key) is not None]
            out[f"{key}_{name}"] = sum(vals) / len(vals) if vals else None
    if "explained_variance" in history[-1]:
        out["explained_variance_end"] = history[-1]["explained_variance"]
    return out


def run(algo: Algo, cfg: SampledRLFields, reward_fn=None) -> dict:
    """Train the policy; returns metrics. `reward_fn(prompts, responses) -> scores` replaces
    the run's reward model (tests use synthetic ones); each prompt is a message list."""
    check_launch(algo.name)
    device_policy = policy_from_config(cfg)
    accelerator = make_accelerator(device_policy.use_cpu)
    device_policy = dataclasses.replace(device_policy, device=accelerator.device)
    paths, say = resolve_paths(cfg, algo.name), (lambda text: accelerator.print(f"[{algo.name}] {text}"))
    out = paths["out"]
    if not (paths["sft"] / "adapter_config.json").exists():
        raise UserError(f"{paths['sft']}: no SFT adapter to start from; train it with `rlhf sft --run {cfg.run}`")
    if not (paths["init"] / "adapter_config.json").exists():
        raise UserError(f"--init {paths['init']}: no LoRA adapter here (adapter_config.json missing)")
    out.mkdir(parents=True, exist_ok=True)
    start = f"{paths['init']} (reference {paths['sft']})" if cfg.init else str(paths["sft"])
    say(f"{start} on {paths['base']} → {out}  ({device_policy.describe()}, "
        f"{accelerator.num_processes} process(es))")

    tok = load_tokenizer(paths["base"], **tokenizer_fixes(cfg))
    preflight(tok)
    prompts, val = heldout.split_prompts(load_train_prompts(paths["prompts"]), cfg.val_prompts, cfg.seed)
    steps = total_iterations(cfg.max_steps, cfg.num_epochs, len(prompts), cfg.batch_size, accelerator.num_processes)
    cfg = dataclasses.replace(cfg, max_steps=steps)
    norm = None
    if reward_fn is None:
        reward_fn, norm = load_reward_fn(paths["reward"], cfg.run, accelerator.device, cfg.normalize_reward)
        if norm:
            m = norm["mean"]
            say(f"reward model scores normalized: (s {'-' if m >= 0 else '+'} {abs(m):.4f}) / {norm['std']:.4f}")

    model = build_actor_critic(paths["base"], paths["sft"], tok, device_policy, lora_config(cfg), cfg.seed,
                               cfg.load_in_4bit, value=algo.value, init_path=paths["init"])
    memory, (n_trainable, n_total) = memory_report(model), count_parameters(model)
    say(f"one base + {'3 adapters + value head' if algo.value else '2 adapters'}: {n_trainable:,} trainable of "
        f"{n_total:,} parameters; {memory['ratio_vs_policy_alone']:.3f}x the policy alone's bytes")
    optimizer = algo.optimizer(model, cfg)
    model, optimizer = accelerator.prepare(model, optimizer)
    kl_ctl = make_kl_controller(cfg)
    start, history = start_or_resume(cfg, out, algo.name, accelerator, accelerator.unwrap_model(model), optimizer,
                                     kl_ctl)

    t0 = time.time()
    verdict = train(algo, cfg, accelerator, model, optimizer, kl_ctl, tok, prompts, reward_fn, out, start, history,
                    val)
    held = heldout.evaluate(accelerator.unwrap_model(model), tok, val, reward_fn, cfg) if val else {}
    metrics = {"steps": len(history), "policy_step": verdict.get("rolled_back_to", len(history)),
               **{f"val_{k.removeprefix('eval_')}": v for k, v in held.items()}, "val_prompts": len(val),
               **summarize(history, cfg.watch_window), "kl_coef_final": kl_ctl.value, "watchdog": verdict,
               "train_seconds": round(time.time() - t0, 1), "prompts": len(prompts),
               "processes": accelerator.num_processes, "trainable_params": n_trainable,
               "total_params": n_total, "memory_bytes": memory, "device": device_policy.describe(),
               "reward_normalization": norm,
               "weights_sha256": weights_sha256(accelerator.unwrap_model(model).trainable_state())}
    if accelerator.is_main_process:
        save_outputs(algo, cfg, paths, out, accelerator.unwrap_model(model), tok, metrics, len(prompts))
    accelerator.wait_for_everyone()
    say(f"done: score {_num(metrics.get('score_start'))} → {_num(metrics.get('score_end'))}, "
        f"KL {_num(metrics.get('kl_end'))}" + (f"; {verdict['message']}" if verdict["tripped"] else ""))
    return metrics


def save_outputs(algo: Algo, cfg, paths: dict, out: Path, model, tok, metrics: dict, n_prompts: int) -> None:
    save_policy_and_value(model, out)
    tok.save_pretrained(str(out))
    verdict = metrics["watchdog"]
    ending = (f"**The watchdog stopped this run**: {verdict['message']}" if verdict["tripped"] else
              f"Finished {metrics['steps']} iterations without a watchdog trip.")
    write_run_card(
        out, stage=algo.name, cfg=cfg, metrics=metrics, base_model=str(paths["base"]),
        data={"prompts": data_info(paths["prompts"], n_prompts),
              "sft adapter": data_info(paths["sft"], kind="model"),
              **({"start adapter": data_info(paths["init"], kind="model")} if cfg.init else {})},
        summary=(f"{algo.describe(cfg)} (KL estimator {cfg.kl_estimator}, β {cfg.kl_coef} "
                 f"{'adaptive' if cfg.adaptive_kl else 'fixed'}). "
                 f"Reward-model score {_num(metrics.get('score_start'))} → {_num(metrics.get('score_end'))} (means "
                 f"over the first and last {cfg.watch_window} iterations), KL to the SFT policy "
                 f"{_num(metrics.get('kl_end'))} nats per response.\n\n{ending}"))


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"
