"""`rlhf loop` options. Per-stage settings go in the YAML's `stages:` section, one mapping per
stage (`stages: {sft: {learning_rate: 1e-4}, dpo: {beta: 0.2}}`), checked against that stage's
own config class, so a typo names the stage and the key."""
from __future__ import annotations

from dataclasses import dataclass

from core import registry
from core.config import F, RuntimeConfig

# the RL algorithms (core/registry.py) run after the reward model, in their registry order
STAGE_NAMES = ("sft", "collect", "reward", *registry.names(), "eval")
# what each later round runs again (loop/rounds.py); round k's stage NAME is called NAME@k
ROUND_STAGES = STAGE_NAMES[1:]


def stage_names(rounds: int) -> tuple[str, ...]:
    """Every stage of a loop of `rounds` rounds, in order."""
    return STAGE_NAMES + tuple(f"{s}@{k}" for k in range(2, rounds + 1) for s in ROUND_STAGES)


@dataclass
class LoopConfig(RuntimeConfig):
    run: str = F("", "run directory: every stage reads and writes below it (required)")
    model: str = F("", "base model: a local Hugging Face causal-LM directory (required)")
    sft: str = F("", "SFT data: TRL `messages` or prompt/completion rows (required)")
    prompts: str = F("", "prompt-only rows: preference collection, PPO and RLOO, and the held-out eval prompts "
                          "(required)")
    preferences: str = F("", "preference pairs in TRL columns; '' = sample comparison items from the SFT policy "
                             "and collect votes in the annotation app")
    redteam: str = F("", "optional prompt-only rows the policies should refuse, for eval's safety audit")
    quick: bool = F(False, "a smoke run: every stage a few steps on a few rows")
    fresh: bool = F(False, "redo every stage, even those whose inputs have not changed")
    until: str = F("", f"stop after this stage ({', '.join(STAGE_NAMES)}, or NAME@K for round K's; '' = all)")
    rounds: int = F(1, "rounds of collection and training: round k+1 collects items from round k's best policy "
                       "(against the best of the round before and SFT), retrains the reward model on every "
                       "round's pairs and continues DPO, PPO and RLOO from round k's adapters; round k lives "
                       "in <run>/rounds/<k>/ (docs/run-directory.md)")
    round_policy: str = F("auto", "the policy whose samples a later round's items carry: auto = the previous "
                                  "round's RL policy with the highest win rate over SFT by people's A/B votes, "
                                  f"else by the reward model; or one of {', '.join(registry.names())}")
    round_dpo_pairs: str = F("new", "what DPO trains on in rounds 2 and later: new = that round's pairs, with the "
                                    "previous round's DPO adapter as start and reference (iterative DPO) | all = "
                                    "every round's pairs so far, with the same start and reference")
    round_reward: str = F("anew", "how rounds 2 and later train the reward model on every round's pairs: anew = "
                                  "from the backbone | continue = from the previous round's reward model")
    jobs: int = F(1, "stages that do not read each other's outputs run side by side, this many at once (the "
                     "reward model alone, then DPO beside PPO, then RLOO), one thread each; pays on a CPU with a small "
                     "model; 0 = auto (2 when the run has 2+ threads); CUDA runs one at a time")
    eval_fraction: float = F(0.1, "share of the prompts held out for evaluation (never trained on)")
    max_eval_prompts: int = F(200, "at most this many held-out eval prompts")
    n_pairs: int = F(500, "comparison items sampled from the SFT policy for the annotators")
    min_pairs: int = F(200, "preference pairs the votes must give before reward, DPO and PPO train")
    min_votes: int = F(1, "votes an item needs before it is exported as a pair")
    db: str = F("", "the collect store's SQLAlchemy URL for the annotation round and eval's human A/B votes "
                    "(postgresql+psycopg://user:pass@host/db); '' = SQLite at <run>/collect/annotations.db")
    reward_model: str = F("", "reward-model backbone ('' = the base model, as Ouyang et al. 2022 start it from "
                              "the policy's own weights)")
    stages: dict = F({}, "per-stage options: {sft: {...}, collect: {...}, reward: {...}, dpo: {...}, ppo: {...}, "
                         "rloo: {...}, eval: {...}} with each stage's own keys (`rlhf STAGE --help`)")
    round_stages: dict = F({}, "options for rounds 2 and later only, over `stages`: {dpo: {beta: 0.05}, "
                               "ppo: {max_steps: 20}} (each stage's own keys)")

    @staticmethod
    def unknown_option_hint(key: str) -> str:
        """For an option the loop does not have: which stages have it (or one close to it), and
        where it goes instead."""
        import dataclasses
        import difflib

        from .run import stage_classes

        fields = {name: {f.name for f in dataclasses.fields(cls)} for name, cls in stage_classes().items()}
        name = key
        if not any(key in names for names in fields.values()):
            close = difflib.get_close_matches(key, sorted(set().union(*fields.values())), n=1, cutoff=0.8)
            if not close:
                return ""
            name = close[0]
        stages = [s for s, names in fields.items() if name in names]
        return (f" ('{name}' is an option of the {', '.join(stages)} stage{'s' if len(stages) > 1 else ''}: set it "
                f"under `stages:` in the loop's --config YAML, e.g. stages: {{{stages[0]}: {{{name}: ...}}}})")
