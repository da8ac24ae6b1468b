"""Rollouts of PPO and RLOO: sample responses, score them, compare them with the reference, and
turn the scores into advantages.

One rollout batch (Stiennon et al. 2020; Huang et al. 2024 for the details marked *):
  1. sample with the KV cache (`generate`), prompts left-padded by core.generation, temperature
     and top-p from the config, at most max_new_tokens;
  2. cut each response at its first EOS (kept); tokens after it are padding and never enter a
     loss or the KL*; a response without EOS gets the missing-EOS penalty*;
  3. the reward function scores the decoded (prompt, response) pairs, each prompt the whole
     conversation it was sampled from (a message list, or a string for one user message);
  4. log-probs of the sampled tokens under the policy and the reference, with logits / T — the
     temperature the tokens were sampled at*;
  5. r_t = −β·KL_t at every token, + the score at the last one.
Steps 1-5 are `policy_experience`, shared by both algorithms. PPO (`make_experience`) then adds
the value head's values, GAE and whitened advantages*; RLOO (rl/rloo.py) one advantage per
response from the other samples of its prompt.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from core.generation import encode_prompts
from core.logps import token_logps
from rl.ppo_math import (entropy_from_logits, explained_variance, gae, kl_penalty, masked_mean, masked_whiten,
                         per_token_rewards)
from rl.ppo_model import REF, position_ids_from_mask

Prompt = str | list[dict]  # a string, or the conversation's messages (core/prompts.py)
RewardFn = Callable[[list[Prompt], list[str]], list[float]]


@dataclass
class Rollout:
    """One batch of experience. (B, L) = prompt + response tokens, (B, R) = response tokens."""
    prompts: list[Prompt]
    responses: list[str]
    input_ids: torch.Tensor  # (B, L) left-padded prompt, then the response, pad after EOS
    attention_mask: torch.Tensor  # (B, L)
    position_ids: torch.Tensor  # (B, L)
    response_ids: torch.Tensor  # (B, R)
    response_mask: torch.Tensor  # (B, R) 1 up to and including the first EOS
    has_eos: torch.Tensor  # (B,) bool
    raw_scores: torch.Tensor  # (B,) the reward function's scores
    scores: torch.Tensor  # (B,) after the missing-EOS penalty and clipping
    logps: torch.Tensor  # (B, R) log π_old, at temperature T
    ref_logps: torch.Tensor  # (B, R) log π_ref, at temperature T
    kl: torch.Tensor  # (B, R) per-token KL estimate, 0 at padding
    rewards: torch.Tensor  # (B, R) −β·KL_t, + the score at the last token (PPO: optionally whitened)
    entropy: torch.Tensor  # 0-d, mean per valid token
    seconds: dict = field(default_factory=dict)  # generate / score / forward wall time
    advantages: torch.Tensor | None = None  # PPO: (B, R) whitened; RLOO: (B,), one per response
    values: torch.Tensor | None = None  # PPO: (B, R) V_old
    returns: torch.Tensor | None = None  # PPO: (B, R)


def response_mask(response_ids: torch.Tensor, eos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask, has_eos): mask is 1 up to and including the first EOS of each row, or on the whole
    row when there is none.  (B, R) → (B, R) long, (B,) bool."""
    is_eos = (response_ids == eos_id).long()
    before_or_at_first = (is_eos.cumsum(-1) - is_eos) == 0  # no EOS strictly before t
    return before_or_at_first.long(), is_eos.bool().any(-1)


def penalize_scores(raw: torch.Tensor, has_eos: torch.Tensor, penalty: float, mode: str = "subtract",
                    clip: float = 0.0) -> torch.Tensor:
    """Scores a truncated response cannot keep (Huang et al. 2024: only completed responses are
    scored). mode "subtract": score − penalty; "replace": −penalty. Then clip to [−clip, clip]
    when clip > 0.  (B,), (B,) → (B,)."""
    if mode not in ("subtract", "replace"):
        raise ValueError(f"missing_eos_mode must be 'subtract' or 'replace', got {mode!r}")
    scores = raw.clone()
    if clip > 0:
        scores = scores.clamp(-clip, clip)
    if penalty:
        cut = ~has_eos
        scores[cut] = -penalty if mode == "replace" else scores[cut] - penalty
    return scores


@torch.no_grad()
def sample(model, tok, prompts: list[Prompt], cfg) -> dict:
    """Sampled responses with the KV cache; the tensors every later forward pass reuses."""
    device = next(model.parameters()).device
    enc = encode_prompts(tok, prompts, device)
    # top_k=0: transformers 5 would apply its default top-k of 50, a distribution the log-probs
    # below (softmax(logits / T) over the whole vocabulary) do not describe
    seqs = model.generate(**enc, do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p,
                          top_k=0, max_new_tokens=cfg.max_new_tokens, pad_token_id=tok.pad_token_id,
                          eos_token_id=tok.eos_token_id, use_cache=True)
    response_ids = seqs[:, enc["input_ids"].shape[1]:]  # (B, R)
    mask, has_eos = response_mask(response_ids, tok.eos_token_id)
    response_ids = response_ids.masked_fill(mask == 0, tok.pad_token_id)
    attention_mask = torch.cat([enc["attention_mask"], mask], dim=1)  # (B, L)
    texts = [tok.decode(ids[: int(n)], skip_special_tokens=True).strip()
             for ids, n in zip(response_ids.tolist(), mask.sum(-1))]
    return {"responses": texts, "input_ids": torch.cat([enc["input_ids"], response_ids], dim=1),
            "attention_mask": attention_mask, "position_ids": position_ids_from_mask(attention_mask),
            "response_ids": response_ids, "response_mask": mask, "has_eos": has_eos}


def score(reward_fn: RewardFn, prompts: list[Prompt], responses: list[str], has_eos: torch.Tensor, cfg
          ) -> tuple[torch.Tensor, torch.Tensor]:
    raw = torch.tensor([float(s) for s in reward_fn(prompts, responses)], dtype=torch.float32)
    if raw.shape[0] != len(responses):
        raise ValueError(f"reward function returned {raw.shape[0]} scores for {len(responses)} responses")
    raw = raw.to(has_eos.device)
    return raw, penalize_scores(raw, has_eos, cfg.missing_eos_penalty, cfg.missing_eos_mode, cfg.reward_clip)


@torch.no_grad()
def policy_experience(model, tok, prompts: list[Prompt], reward_fn: RewardFn, cfg, kl_coef: float) -> Rollout:
    """Steps 1-5 of the module docstring for one batch of prompts, without advantages. `model` is
    an ActorCritic (rl/ppo_model.py), with or without its value function."""
    t0 = time.perf_counter()
    s = sample(model, tok, prompts, cfg)
    t1 = time.perf_counter()
    raw, scores = score(reward_fn, prompts, s["responses"], s["has_eos"], cfg)
    t2 = time.perf_counter()
    mask, labels, n = s["response_mask"], s["response_ids"], s["response_ids"].shape[1]
    seq = (s["input_ids"], s["attention_mask"], s["position_ids"], n)
    logits = model.logits(*seq)  # (B, R, V)
    logps = token_logps(logits, labels, mask, cfg.temperature)
    entropy = masked_mean(torch.stack([entropy_from_logits(row.float() / cfg.temperature) for row in logits]),
                          mask)  # row by row, like token_logps: no float copy of the whole (B, R, V)
    del logits
    ref_logps = token_logps(model.logits(*seq, adapter=REF), labels, mask, cfg.temperature)
    kl = kl_penalty(logps, ref_logps, cfg.kl_estimator) * mask  # (B, R)
    rewards = per_token_rewards(scores, kl, mask, kl_coef)
    t3 = time.perf_counter()
    return Rollout(prompts=list(prompts), responses=s["responses"], input_ids=s["input_ids"],
                   attention_mask=s["attention_mask"], position_ids=s["position_ids"], response_ids=labels,
                   response_mask=mask, has_eos=s["has_eos"], raw_scores=raw, scores=scores, logps=logps,
                   ref_logps=ref_logps, kl=kl, rewards=rewards, entropy=entropy,
                   seconds={"generate": t1 - t0, "score": t2 - t1, "forward": t3 - t2})


@torch.no_grad()
def make_experience(model, tok, prompts: list[Prompt], reward_fn: RewardFn, cfg, kl_coef: float) -> Rollout:
    """PPO's rollout: policy_experience, then values, GAE and whitened per-token advantages."""
    r = policy_experience(model, tok, prompts, reward_fn, cfg, kl_coef)
    t0 = time.perf_counter()
    mask = r.response_mask
    r.values = model.values(r.input_ids, r.attention_mask, r.position_ids, r.response_ids.shape[1]) * mask
    if cfg.whiten_rewards:
        r.rewards = masked_whiten(r.rewards, mask, shift_mean=False)
    advantages, r.returns = gae(r.rewards, r.values, mask, cfg.gamma, cfg.lam)
    r.advantages = masked_whiten(advantages, mask)
    r.seconds["forward"] += time.perf_counter() - t0
    return r


def per_sample(r: Rollout) -> torch.Tensor:
    """Per-response statistics to gather across processes: (B, 6) columns raw score, penalized
    score, KL (summed over the response), RLHF reward (summed per-token rewards), length, EOS."""
    mask = r.response_mask.float()
    return torch.stack([r.raw_scores, r.scores, r.kl.sum(-1), r.rewards.sum(-1), mask.sum(-1),
                        r.has_eos.float()], dim=-1)


SAMPLE_COLUMNS = ("score", "penalized_score", "kl", "rlhf_reward", "response_length", "eos_rate")


def sample_metrics(rows: torch.Tensor) -> dict[str, float | None]:
    """Batch means of the per_sample columns plus the score-length correlation (None when either
    is constant). The RLHF reward is the penalized score minus β·KL, as the policy sees it."""
    out = {k: float(v) for k, v in zip(SAMPLE_COLUMNS, rows.double().mean(0))}
    score, length = rows[:, 0].double(), rows[:, 4].double()
    if len(score) > 1 and score.std() > 0 and length.std() > 0:
        out["reward_length_corr"] = float(torch.corrcoef(torch.stack([score, length]))[0, 1])
    else:
        out["reward_length_corr"] = None
    return out


def value_metrics(r: Rollout) -> dict[str, torch.Tensor]:
    """Token-level statistics of the rollout (averaged across processes by the caller)."""
    return {"entropy": r.entropy, "explained_variance": explained_variance(r.values, r.returns, r.response_mask),
            "value_mean": masked_mean(r.values, r.response_mask),
            "return_mean": masked_mean(r.returns, r.response_mask)}
