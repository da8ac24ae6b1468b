"""What a sweep's trials are judged on: each stage's own held-out metric, never the gold oracle.

A metric is read twice: during training from the stage's log.jsonl (its evaluation rows, every
`eval_steps`), which is what pruning compares, and at the end from the stage's metrics.json,
which is the trial's value.

Some metrics change meaning with an option: DPO's held-out loss at β = 0.05 and at β = 0.5 are
different functions of the same policy (the loss is −log σ(β·margin)), so a sweep over β that
minimised it would pick the β with the smallest loss scale, not the best policy. Such a pair is
refused before any trial runs; the preference accuracy, which only sees the margin's sign, is not
affected. DPO's on-policy options (rl/onpolicy.py) change the held-out pairs themselves, so
neither DPO metric can rank them. The reward model's held-out loss is the plain pairwise loss
−log σ(r_c − r_r) on the reward head, with the majority label as the target, whatever margin or
centering trained it, so it compares across those. It does not compare across soft_labels or
length_covariate: a model trained on hard labels minimises that very function while one trained
on the annotators' shares aims at less confident targets, and a length covariate learns part of
the preference outside the reward head, where the held-out loss does not look (on the demo, a
sweep that searched both picked hard labels without the covariate: 0.37 against 0.41 on seed 0's
held-out pairs, and the same accuracy against gold as the baseline on seed 1's). Those are
searched on the held-out accuracy.

PPO and RLOO have no held-out loss: their training reward is measured on their own rollouts,
which the searched options change. They are judged on the held-out objective score − β·KL on
prompts kept out of training, with a fixed β (rl/heldout.py says why); the options that change
how it is measured (β itself, the sampling, the score's penalties) cannot be searched with it.
"""
from __future__ import annotations

from dataclasses import dataclass

from core import registry
from core.config import ConfigError, SampledRLFields


@dataclass(frozen=True)
class Metric:
    name: str  # the key in the stage's metrics.json
    log_key: str  # the key in its log.jsonl evaluation rows
    direction: str  # minimize | maximize
    depends_on: frozenset = frozenset()  # options whose value changes what the metric measures


_DPO_LOSS_SHAPE = frozenset({"beta", "loss_type", "label_smoothing", "max_eps", "smoothing_prior", "nll_coef"})
# on-policy pairs (rl/onpolicy.py) are part of the held-out pairs: these options change the pairs
# both DPO metrics are computed on
_DPO_PAIRS = frozenset({"onpolicy_samples", "onpolicy_reward", "onpolicy_prompts", "onpolicy_min_gap",
                        "onpolicy_keep_pairs", "onpolicy_temperature", "onpolicy_max_new_tokens"})

METRICS: dict[str, dict[str, Metric]] = {
    "sft": {"val_loss": Metric("val_loss", "eval_loss", "minimize", frozenset({"max_length"}))},
    "reward": {"heldout_loss": Metric("heldout_loss", "eval_loss", "minimize",
                                      frozenset({"soft_labels", "length_covariate"})),
               "heldout_accuracy": Metric("heldout_accuracy", "eval_accuracy", "maximize")},
    "dpo": {"val_loss": Metric("val_loss", "eval_loss", "minimize", _DPO_LOSS_SHAPE | _DPO_PAIRS),
            "val_accuracy": Metric("val_accuracy", "eval_rewards/accuracies", "maximize", _DPO_PAIRS)},
}
_HELDOUT_OBJECTIVE = Metric("val_objective", "eval_objective", "maximize", frozenset({
    "objective_kl_coef", "val_prompts", "temperature", "top_p", "max_new_tokens", "missing_eos_penalty",
    "missing_eos_mode", "reward_clip", "normalize_reward"}))
METRICS.update({a.name: {"val_objective": _HELDOUT_OBJECTIVE} for a in registry.ALGORITHMS
                if issubclass(a.config_class(), SampledRLFields)})
DEFAULT_METRIC = {stage: next(iter(metrics)) for stage, metrics in METRICS.items()}
VAL_PROMPTS = 64  # held-out prompts a PPO or RLOO sweep keeps out of training when the config holds none


def stages() -> tuple[str, ...]:
    return tuple(METRICS)


def metric_for(stage: str, name: str, searched: list[str]) -> Metric:
    """The stage's metric called `name` ('' = its default), checked against the searched options."""
    if stage not in METRICS:
        raise ConfigError(f"rlhf sweep: stage '{stage}' has no held-out metric to search on "
                          f"(stages: {', '.join(METRICS)})")
    name = name or DEFAULT_METRIC[stage]
    if name not in METRICS[stage]:
        raise ConfigError(f"key 'metric': {stage} reports {', '.join(METRICS[stage])}, not '{name}'")
    metric = METRICS[stage][name]
    clash = sorted(metric.depends_on & set(searched))
    if clash:
        others = [m for m, x in METRICS[stage].items() if not x.depends_on & set(searched)]
        hint = f"; search on --metric {others[0]} instead" if others else ""
        raise ConfigError(f"key 'metric': {stage}'s {name} measures something else at each value of "
                          f"{', '.join(clash)}, so it cannot rank them{hint}")
    return metric
