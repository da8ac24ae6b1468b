"""The demo's tuned stage settings: the tiny embedded model on the synthetic shop, on 2 CPU cores.

Each stage's own defaults (core/config.py) suit a 0.5-8B model on a GPU. The 4M-parameter demo
model wants other values, found by measuring on the demo: they live here, and configs/*/tiny.yaml
repeats them for `rlhf STAGE --config configs/STAGE/tiny.yaml` (a test keeps the two equal).
"""
from __future__ import annotations

# Where the tiny model differs from the stage defaults, whatever the run's size.
TINY = {
    # A 4M-parameter model tolerates a 10x higher LoRA learning rate; dropout cost 20% of an SFT
    # step on the CPU (one dropout per LoRA layer) and was not needed.
    "sft": {"learning_rate": 2e-3, "batch_size": 16, "max_length": 256, "warmup_ratio": 0.05,
            "lora_dropout": 0.0},
    # 5e-5 gave held-out accuracy 0.74 against gold after 2 epochs, 1e-4 0.80, 2e-4 0.82 with more
    # length bias; 1e-4 is also the stage default.
    "reward": {"batch_size": 16, "max_length": 256, "eval_steps": 20, "lora_dropout": 0.0},
    # lr 2e-4 for 150 steps collapsed the tiny policy into repetition; 1e-5..2e-5 for 60-100 steps
    # improved it, with early stopping on held-out loss and a KL limit guarding the rest. At the
    # full demo's 1e-4, 160 steps gave round 1 about +0.02 but round 2 less, and put DPO's 227 s on
    # the one-round demo's critical path (docs/demo-results.md, "On-policy DPO").
    "dpo": {"beta": 0.3, "learning_rate": 2e-5, "max_steps": 80, "batch_size": 16, "max_length": 256,
            "eval_steps": 10},
    "ppo": {"max_steps": 100, "batch_size": 16, "mini_batch_size": 8, "max_new_tokens": 64, "lora_dropout": 0.0},
    # the same 16 rollouts per iteration as PPO (4 prompts x k = 4), without PPO's value passes and
    # second epoch: an iteration costs less than PPO's (bench/ppo_throughput.py)
    "rloo": {"max_steps": 100, "batch_size": 4, "num_generations": 4, "mini_batch_size": 8, "max_new_tokens": 64},
    # 128 prompts per batch generated 1.4x faster than 32 on the CPU; one single-thread process per
    # core (workers 0): two answered in 117 s what one with two threads did in 157
    # (bench/parallel_stages.py)
    "eval": {"max_new_tokens": 96, "batch_size": 128, "workers": 0},
    # the same for the annotation round's sampling
    "collect": {"workers": 0},
}

# The full demo's sizes on top of TINY (the 15-minute budget on 2 cores).
FULL_ONLY = {
    # 2640 log rows (15% harmful requests) for 2.75 epochs: the steps of 2400 rows x 3. Cutting to
    # 2.5 epochs and 420 base steps saved 4 s and lost SFT fact accuracy (0.70 -> 0.59)
    "sft": {"num_epochs": 2.75},
    # temperature: at 1.0 almost half the pairs were "both bad" (not exported). 3 candidates: of
    # the 200 pairs on harmful requests, 107 instead of 86 had exactly one refusal and 16
    # instead of 30 two (seed 1's SFT policy), for 71 s of sampling instead of 50 (4: 113, 106 s)
    "collect": {"temperature": 0.8, "candidates": 3},
    # mismatched negatives (reward/negatives.py), length covariate off (the stage default): on the
    # AVX2 EPYC, seeds 0 / 1, the reward model's gold accuracy on decisive held-out pairs went
    # 0.859 / 0.761 -> 0.906 / 0.891 and its reward-length correlation 0.06 / 0.19 -> 0.20 / 0.17
    # (gold's 0.17 / 0.20). Twice the steps: 156-174 s alone on both threads (loop/parallel.py)
    # instead of 140 s beside DPO; one round 855 / 869 s (docs/demo-results.md)
    "reward": {"num_epochs": 2.0, "mismatched_negatives": 1},
    # the reference forward once per pair, not once per step; ε from 3 agreeing votes 0.125, not 0.2
    # float32: on this project's avx512_bf16 CPU, bf16 autocast (what --dtype auto picks there)
    # took 91 s against float32's 86 s for the same 80 steps and validation loss (0.648)
    "dpo": {"learning_rate": 1e-4, "beta": 0.1, "precompute_ref_log_probs": True, "smoothing_prior": 0.5,
            "dtype": "float32"},
    "ppo": {"max_steps": 30, "learning_rate": 1e-4},
    "rloo": {"max_steps": 30, "learning_rate": 1e-4},
    # perplexity of 4 policies on 200 rows each took 28 s of the eval's 92. The pretrained base is
    # left out (it cannot hold a conversation, and its answers are the longest): 87 s instead of 114
    # for the same four policies' answers (`policies: ''` puts it back)
    "eval": {"ppl_max_rows": 100, "policies": "sft,dpo,ppo,rloo"},
}

# Reduced sizes for CI and tests: the same code paths, minutes less.
QUICK_ONLY = {
    "data": {"n_sft": 600, "n_pref": 48, "n_eval": 16, "n_redteam": 8},
    "base": {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 176,
             "vocab_size": 1024, "seq_len": 128, "max_steps": 40, "warmup_steps": 4},
    "sft": {"max_steps": 20, "eval_steps": 20, "batch_size": 8, "logging_steps": 5},
    # the quick loop's policy babbles: without "both bad" votes its pairs still rank by gold score
    "collect": {"n_pairs": 48, "max_new_tokens": 24, "annotators": 4, "careless": 1, "both_bad_below": 0.0},
    "reward": {"max_steps": 12, "eval_steps": 6, "batch_size": 8, "max_length": 96},
    "dpo": {"max_steps": 6, "eval_steps": 3, "batch_size": 4, "logging_steps": 1, "max_length": 96},
    "ppo": {"max_steps": 3, "batch_size": 4, "mini_batch_size": 4, "max_new_tokens": 16, "save_steps": 3},
    "rloo": {"max_steps": 3, "batch_size": 2, "num_generations": 2, "mini_batch_size": 4, "max_new_tokens": 16,
             "save_steps": 3},
    "eval": {"max_prompts": 8, "max_new_tokens": 24, "ppl_max_rows": 16, "n_bootstrap": 200},
}


# Rounds 2 and later (LoopConfig.round_stages). The reward model keeps round 1's settings, without
# the length covariate: fitted beside the reward (0.45 per log-token) and dropped when scoring, it
# left short refusals ("I can't help with that.") about 0.5 above where the preferences put them,
# and round 2's PPO and RLOO learned to refuse benign questions. Retrained without it, round 2
# against round 1 by gold (greedy): PPO 0.655 -> 0.725 (seed 0) and 0.105 -> 0.435 (seed 1), RLOO
# 0.43 -> 0.515 and 0.11 -> 0.32; its gold accuracy on round 2's new held-out pairs 0.77 -> 0.81 and
# 0.87 -> 0.83.
#
# DPO in round 2 on every round's pairs (ROUND_DPO_PAIRS) at twice the learning rate and half the β:
# on its ~390 new pairs at round 1's settings it barely moved (KL 0.02 nats per token from round
# 1's adapter; 47 of 100 greedy answers unchanged). Round 2 against round 1 by gold, greedy (the
# same round-1 models, seeds 0 / 1): new pairs as round 1 0.555 / 0.595; all pairs 0.555 / 0.56;
# all pairs, lr 2e-4 0.575 / 0.605; all pairs, lr 2e-4, β 0.05 0.59 [0.515, 0.665] / 0.585
# [0.505, 0.66]; new pairs, lr 2e-4 0.53 / 0.595; new pairs, 160 steps 0.53 / 0.585. Checked on
# seed 2 afterwards: greedy 0.52 against round 1's settings' 0.53, sampled 0.50 against 0.45.
ROUNDS = {"dpo": {"learning_rate": 2e-4, "beta": 0.05}}
ROUND_DPO_PAIRS = "all"


def _merge(*layers: dict) -> dict:
    out: dict = {}
    for layer in layers:
        for stage, values in layer.items():
            out[stage] = {**out.get(stage, {}), **values}
    return out


FULL = _merge(TINY, FULL_ONLY)
QUICK = _merge(TINY, QUICK_ONLY)
