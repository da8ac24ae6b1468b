"""The demo's own configs: its data, its tiny base model, its simulated annotation round and the
whole loop (`rlhf data demo`, `rlhf base`, the demo's collect stage, `rlhf demo`). Loaded like every
stage config: defaults ← YAML file ← command-line overrides (core/config.py)."""
from __future__ import annotations

from dataclasses import dataclass

from core import registry
from core.config import F, RuntimeConfig

# `rlhf demo`'s stages in order: the RL algorithms (core/registry.py) run after the reward model
STAGES = ("data", "base", "sft", "collect", "reward", *registry.names(), "eval")


@dataclass
class DataConfig:
    run: str = F("runs/demo", "run directory: the demo data goes to <run>/data")
    seed: int = F(0, "seed of the synthetic demo domain")
    n_sft: int = F(2640, "rows of simulated support logs for SFT (15% harmful requests: 2244 benign)")
    n_pref: int = F(800, "held-out prompts for preference collection and RL")
    n_eval: int = F(100, "held-out prompts for evaluation")
    n_redteam: int = F(96, "red-team prompts that must be refused (96: a harmful-rate difference of 0.1 between "
                            "two policies is at the edge of what 48 could tell from noise)")
    faq_per_wording: int = F(10, "pretraining corpus: help-center questions asked per question wording "
                                 "(demo/corpus.py faq_pages; 20 with forum_per_wording 4 and the base's "
                                 "max_steps 880: README, 'A richer corpus')")
    forum_per_wording: int = F(2, "pretraining corpus: deals-forum threads per harmful request wording "
                                  "(demo/corpus.py forum_pages)")


@dataclass
class BaseConfig(RuntimeConfig):
    corpus: str = F("", "pretraining text file ('' = <run>/data/corpus.txt); documents split on <|endoftext|>")
    out: str = F("", "output directory ('' = <run>/base)")
    vocab_size: int = F(4096, "byte-level BPE vocabulary size")
    hidden_size: int = F(256, "model width")
    num_layers: int = F(4, "transformer blocks (4 instead of 6: the base in 0.73x the time, held-out loss "
                           "0.457 against 0.451, bench/base_dtype.py --layers 6,4; SFT's greedy gold score "
                           "2.91 against 2.90, fact accuracy 0.63 against 0.64)")
    num_heads: int = F(8, "attention heads")
    num_kv_heads: int = F(4, "key/value heads (grouped-query attention)")
    intermediate_size: int = F(704, "MLP width")
    seq_len: int = F(256, "tokens per packed training block")
    batch_size: int = F(8, "blocks per step (8 x 256 tokens: twice the updates of 16 for the same tokens)")
    max_steps: int = F(440, "optimizer steps (~3 min on 2 cores; held-out loss 0.57 vs 0.80 with "
                            "16-block batches at lr 1e-3 on the same 900k tokens)")
    short_seq_share: float = F(0.9, "share of the steps (the first ones) on half-length blocks, twice as many per "
                                    "step: the same tokens, less attention cost (demo: 230 s instead of 246, "
                                    "held-out loss 0.451 instead of 0.480)")
    learning_rate: float = F(2e-3, "peak AdamW learning rate (3e-3 trained slower)")
    warmup_steps: int = F(30, "linear warm-up steps before cosine decay")
    weight_decay: float = F(0.1, "AdamW weight decay")
    dtype: str = F("float32", "float32, or auto (bf16 autocast where the CPU runs it faster, core/device.py) | "
                              "bfloat16: 440 steps under bf16 autocast took 189 s instead of 247 on an EPYC with "
                              "avx512_bf16, held-out loss 0.496 instead of 0.451, fact accuracy 0.511 both "
                              "(bench/base_dtype.py)")


@dataclass
class SimulatedRoundConfig(RuntimeConfig):
    """The demo's annotation round: sample pairs, simulated annotators vote, export preferences."""
    n_pairs: int = F(800, "preference prompts to sample a pair for (the SFT policy sampled twice)")
    temperature: float = F(1.0, "sampling temperature of the pairs")
    top_p: float = F(1.0, "nucleus sampling threshold of the pairs")
    candidates: int = F(2, "samples per prompt; the two most different become the pair")
    pairs_per_prompt: int = F(1, "pairs per prompt, each sampled with its own seeds (2: twice the pairs "
                                 "from the same prompts)")
    max_new_tokens: int = F(64, "response length limit")
    batch_size: int = F(128, "prompts per generation batch (on CPU, 128 generated 1.4x faster than 32)")
    workers: int = F(1, "single-thread processes that share the sampling on the CPU, 0 = one per thread "
                        "(collect/generate.py); the same pairs either way")
    annotators: int = F(5, "simulated annotators")
    careless: int = F(1, "of which answer at random (the agreement checks should catch them)")
    overlap: int = F(3, "annotators per item")
    gold_rate: float = F(0.1, "share of gold items each annotator sees")
    both_bad_below: float = F(2.0, "a careful annotator votes 'both bad' when both gold scores are below this")
    min_agreement: float = F(0.0, "export: drop pairs whose vote agreement is below this")


@dataclass
class DemoConfig(RuntimeConfig):
    fresh: bool = F(False, "redo every stage even when its inputs have not changed")
    quick: bool = F(False, "a reduced-size loop (CI and tests): small data, short training")
    until: str = F("", f"stop after this stage ({', '.join(STAGES)}, or NAME@K for round K's; '' = all)")
    rounds: int = F(1, "rounds of the loop: round 2 collects simulated votes on the round-1 best policy's "
                       "answers, retrains the reward model on both rounds and continues the RL policies "
                       "(<run>/rounds/2/, loop/rounds.py)")
    round_policy: str = F("auto", "the policy whose samples a later round's items carry (auto: by the reward "
                                  "model's win rate over SFT; or dpo, ppo, rloo)")
    jobs: int = F(0, "stages that do not read each other's outputs run side by side (the reward model alone, "
                     "then DPO beside PPO, then RLOO), one thread each; 0 = auto (2 when the run has 2+ threads), "
                     "1 = one at a time")
    data_config: str = F("", "YAML for the data stage ('' = built-in defaults)")
    base_config: str = F("", "YAML for the base stage ('' = built-in defaults)")
    sft_config: str = F("", "YAML for the sft stage ('' = built-in defaults)")
    collect_config: str = F("", "YAML for the simulated annotation round ('' = built-in defaults)")
    reward_config: str = F("", "YAML for the reward stage ('' = built-in defaults)")
    dpo_config: str = F("", "YAML for the dpo stage ('' = built-in defaults)")
    ppo_config: str = F("", "YAML for the ppo stage ('' = built-in defaults)")
    rloo_config: str = F("", "YAML for the rloo stage ('' = built-in defaults)")
    eval_config: str = F("", "YAML for the eval stage ('' = built-in defaults)")
