"""A held-out objective for PPO and RLOO: the KL-regularised RLHF objective on prompts the policy
never trains on.

    objective = mean over held-out prompts of  score(x, y) − β · KL(π(·|x) ‖ π_ref(·|x)),   y ~ π(·|x)

the quantity both algorithms maximise (Ziegler et al. 2019; Stiennon et al. 2020), measured on
`val_prompts` prompts held out of the training set by the project's hold-out hash, with the
rollout's own sampling, scoring (the reward model, normalised as in training, with the missing-EOS
penalty) and KL estimate summed over the response. β is `objective_kl_coef`, fixed: the training β
adapts (kl_target), and a sweep over KL settings needs one yardstick. The samples use one fixed seed at every evaluation,
so two evaluations differ by the policy, not by the draw.

It is still the reward model's judgement: a policy can raise it by exploiting the reward model
where the KL term is too weak to stop it. A sweep on it should use a β no smaller than training's,
and its winner should be checked by the eval stage (gold or people) before it is trusted.
"""
from __future__ import annotations

import torch

from core.config import UserError
from core.prompts import prompt_key
from core.split import held_out_score
from rl.rollout import per_sample, policy_experience

EVAL_SEED = 2_147_483_647  # the sampling seed of every held-out evaluation (not a training step's)


def split_prompts(prompts: list, n: int, seed: int) -> tuple[list, list]:
    """(training, held-out): the n distinct prompts that the project's hold-out hash ranks first
    (core/split.py: it depends on the prompt and the seed only, not on the file's order), every
    row of them held out; the rest kept in their order."""
    if n <= 0:
        return prompts, []
    keys = [prompt_key(p) for p in prompts]
    distinct = sorted(set(keys), key=lambda k: held_out_score(k, seed))
    if n >= len(distinct):
        raise UserError(f"val_prompts {n}: the run has only {len(distinct)} distinct training prompts; hold out fewer")
    held = set(distinct[:n])
    return [p for p, k in zip(prompts, keys) if k not in held], [p for p, k in zip(prompts, keys) if k in held]


@torch.no_grad()
def evaluate(model, tok, prompts: list, reward_fn, cfg) -> dict[str, float]:
    """The held-out objective and its two terms for `model` (an ActorCritic), in batches of
    cfg.batch_size prompts."""
    torch.manual_seed(EVAL_SEED)  # each training iteration seeds its own sampling again (pg_loop.train)
    rows = torch.cat([per_sample(policy_experience(model, tok, prompts[i:i + cfg.batch_size], reward_fn, cfg, 0.0))
                      for i in range(0, len(prompts), cfg.batch_size)]).double()
    score, kl = float(rows[:, 1].mean()), float(rows[:, 2].mean())  # penalised score, KL summed per response
    return {"eval_score": score, "eval_kl": kl, "eval_objective": score - cfg.objective_kl_coef * kl}
