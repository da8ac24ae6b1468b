"""`rlhf loop`: sft → collect → reward → dpo → ppo → rloo → eval on the user's own model and data.

Every stage is the same code `rlhf STAGE` runs, with the run-directory layout filled in:
<run>/data/prompts.jsonl (the user's prompts, tagged pref or eval), <run>/sft, <run>/collect,
<run>/reward, <run>/dpo, <run>/ppo, <run>/rloo, <run>/eval. Finished stages are skipped while their
settings and inputs are unchanged, interrupted ones resume (loop.runner). Without --preferences the loop
samples comparison items and stops until annotators have voted (loop.collect).
"""
from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from core import registry
from core.config import (ConfigError, EvalConfig, RewardConfig, SFTConfig, UserError, apply_updates, load_config,
                         to_dict)
from core.io import write_json

from core.rounds import make_round_dir, round_dir

from .collect import AwaitingVotes, CollectConfig, collect_from_people, rerun_argv
from .config import STAGE_NAMES, LoopConfig, stage_names
from .prompts import write_tagged_prompts
from .rounds import (ALL_PAIRS, NEW_PAIRS, RoundCollectConfig, collect_round, forget_store_round, people_votes,
                     round_configs)
from .parallel import resolve_jobs, run_scheduled
from .runner import Stage, clear_run, move_aside, run_stage


def stage_classes() -> dict[str, type]:
    return {"sft": SFTConfig, "collect": CollectConfig, "reward": RewardConfig,
            **{a.name: a.config_class() for a in registry.ALGORITHMS}, "eval": EvalConfig}


# --quick: every stage a few steps on a few rows, for a smoke run of a new model or data set (the RL
# algorithms' sizes are in their registry entries).
QUICK = {
    "sft": {"max_steps": 4, "eval_steps": 2, "batch_size": 4, "logging_steps": 1, "max_length": 256},
    "collect": {"n_pairs": 16, "min_pairs": 4, "max_new_tokens": 24, "batch_size": 16},
    "reward": {"max_steps": 4, "eval_steps": 2, "batch_size": 4, "max_length": 256},
    "eval": {"max_prompts": 8, "max_new_tokens": 16, "ppl_max_rows": 8, "n_bootstrap": 100, "batch_size": 8},
}


def check(cfg: LoopConfig) -> None:
    """Every option, before anything is loaded or trained."""
    missing = [f"--{k}" for k in ("run", "model", "sft", "prompts") if not getattr(cfg, k)]
    if missing:
        raise ConfigError(f"command line: {', '.join(missing)} required (rlhf loop --help)")
    if not (Path(cfg.model) / "config.json").exists():
        raise UserError(f"--model {cfg.model}: not a Hugging Face model directory (no config.json there)")
    for key in ("sft", "prompts", "preferences", "redteam"):
        value = getattr(cfg, key)
        if value and not Path(value).exists():
            raise UserError(f"--{key} {value}: file not found")
    if cfg.rounds < 1:
        raise ConfigError(f"--rounds {cfg.rounds}: must be at least 1")
    if cfg.jobs < 0:
        raise ConfigError(f"--jobs {cfg.jobs}: must be 0 (auto) or more")
    if cfg.round_policy not in ("auto", *registry.names()):
        raise ConfigError(f"--round_policy {cfg.round_policy!r}: must be auto or one of {', '.join(registry.names())}")
    if cfg.until and cfg.until not in stage_names(cfg.rounds):
        raise ConfigError(f"--until {cfg.until!r}: not a stage (one of {', '.join(STAGE_NAMES)}"
                          + (f", or NAME@K for K in 2..{cfg.rounds}" if cfg.rounds > 1 else "") + ")")
    unknown = sorted(set(cfg.stages) - set(STAGE_NAMES))
    if unknown:
        raise ConfigError(f"stages: unknown stage {unknown[0]!r} (one of {', '.join(STAGE_NAMES)})")
    unknown = sorted(set(cfg.round_stages) - set(STAGE_NAMES[1:]))
    if unknown:
        raise ConfigError(f"round_stages: unknown stage {unknown[0]!r} (one of {', '.join(STAGE_NAMES[1:])})")
    if cfg.round_dpo_pairs not in ("new", "all"):
        raise ConfigError(f"--round_dpo_pairs {cfg.round_dpo_pairs!r}: must be new or all")
    if cfg.round_reward not in ("anew", "continue"):
        raise ConfigError(f"--round_reward {cfg.round_reward!r}: must be anew or continue")
    if not 0 < cfg.eval_fraction < 1:
        raise ConfigError(f"eval_fraction must lie in (0, 1), got {cfg.eval_fraction}")
    if cfg.min_pairs < 1 or cfg.n_pairs < 1:
        raise ConfigError("n_pairs and min_pairs must be >= 1")
    check_data(cfg)


def check_data(cfg: LoopConfig) -> None:
    """Every input file's rows, before the first stage: a broken row in the preferences
    (read by the reward stage, after SFT) is reported before SFT trains, not after. A
    preference file whose every pair has the same chosen and rejected text is refused: there
    is nothing in it to learn (`rlhf data check` lists such pairs one by one)."""
    from core.records import read_preferences, read_sft

    read_sft(cfg.sft)
    for key in ("prompts", "redteam"):
        if getattr(cfg, key):
            check_prompt_file(f"--{key}", getattr(cfg, key))
    if cfg.preferences:
        pairs = read_preferences(cfg.preferences)
        same = sum(str(p["chosen"]).strip() == str(p["rejected"]).strip() for p in pairs)
        if same == len(pairs):
            raise UserError(f"--preferences {cfg.preferences}: in all {same} pairs the chosen and the rejected "
                            "answer are the same text: nothing to learn from (nothing was trained)")
        if same:
            print(f"[loop] warning: --preferences {cfg.preferences}: {same} of {len(pairs)} pairs have the same "
                  "chosen and rejected text (they teach nothing; `rlhf data check` lists them)")


# columns of SFT or preference data that a prompts file's reader drops without a word
ANSWER_COLUMNS = ("completion", "chosen", "rejected", "response")


def check_prompt_file(option: str, path: str) -> None:
    """A prompts file's rows, ids that repeat (they name the comparison items and the eval rows, so
    the loop would stop at its collect step, after SFT), and a note when its rows carry answers
    that the loop ignores (an SFT or preference file given as prompts)."""
    from core.records import read_prompts
    from core.rowfiles import iter_raw_rows

    first: dict[str, str] = {}
    for row in read_prompts(path):
        if row["id"] in first:
            raise UserError(f"{row['_source']}: id: {row['id']!r} repeats the id of {first[row['id']]}; each "
                            f"prompt needs its own (`rlhf data check {path}` lists every repeat)")
        first[row["id"]] = row["_source"]
    raw = next((r for _, r in iter_raw_rows(path) if isinstance(r, dict)), {})
    ignored = [c for c in ANSWER_COLUMNS if c in raw]
    if ignored:
        many = len(ignored) > 1
        print(f"[loop] note: {option} {path}: its {', '.join(ignored)} column{'s are' if many else ' is'} ignored: "
              "the loop takes only each row's prompt from it")


def stage_configs(cfg: LoopConfig) -> dict:
    """Each stage's config: its defaults ← --quick sizes ← the loop's paths ← the YAML's stages section."""
    run = Path(cfg.run)
    runtime = {"run": cfg.run, "seed": cfg.seed, "device": cfg.device, "dtype": cfg.dtype, "threads": cfg.threads,
               "gradient_checkpointing": cfg.gradient_checkpointing, "eos_token": cfg.eos_token,
               "chat_template": cfg.chat_template}
    prefs = cfg.preferences or str(run / "collect" / "preferences.jsonl")
    paths = {
        "sft": {"model": cfg.model, "data": cfg.sft},
        "reward": {"model": cfg.reward_model or cfg.model, "data": prefs},
        **{a.name: {"model": cfg.model, **({"data": prefs} if "preferences" in a.inputs else {})}
           for a in registry.ALGORITHMS},
        "eval": {**({"redteam": cfg.redteam} if cfg.redteam else {}), "db": cfg.db},
    }
    quick = {**QUICK, **{a.name: a.quick for a in registry.ALGORITHMS}}
    out = {}
    for name, cls in stage_classes().items():
        if name == "collect":
            base = {"run": cfg.run, "seed": cfg.seed, "device": cfg.device, "threads": cfg.threads,
                    "n_pairs": cfg.n_pairs, "min_pairs": cfg.min_pairs, "min_votes": cfg.min_votes,
                    "eos_token": cfg.eos_token, "chat_template": cfg.chat_template, "db": cfg.db}
            values = {**base, **(QUICK["collect"] if cfg.quick else {}), **cfg.stages.get("collect", {})}
            fields = set(CollectConfig.__dataclass_fields__)
            bad = sorted(set(values) - fields)
            if bad:
                raise ConfigError(f"stages.collect: unknown key {bad[0]!r} (one of {', '.join(sorted(fields))})")
            out[name] = CollectConfig(**values)
            continue
        defaults = {**(quick[name] if cfg.quick else {}), **runtime, **paths[name]}
        out[name] = apply_updates(load_config(cls, None, None, defaults), cfg.stages.get(name) or {},
                                  f"stages.{name}")
    return out


@dataclass
class Hooks:
    """What a caller on top of the loop plugs in; the demo uses all three."""
    collect: Stage | None = None  # replaces the people-annotation step (the demo's simulated round)
    # a later round's votes (loop/rounds.py collect_round): None = people in the app; the demo
    # passes its simulated annotators
    round_votes: Callable[[RoundCollectConfig], dict | None] | None = None
    reward_gold: Callable | None = None  # reward.train.main's gold metrics (needs a gold judge)
    eval_judge: Any = None  # eval.stage.main's judge (core/judge.py)


# The weights are part of a model's fingerprint while hashing them is cheap; a larger model counts
# by its config.json and the weights' sizes (re-training such a base in place is rare, and hashing
# 16 GB would cost every run seconds).
HASH_WEIGHTS_BELOW = 1 << 30


def model_inputs(model: Path) -> dict[str, Path]:
    weights = sorted(model.glob("*.safetensors")) + sorted(model.glob("*.bin"))
    if weights and sum(w.stat().st_size for w in weights) < HASH_WEIGHTS_BELOW:
        return {"model": model / "config.json", **{f"weights/{w.name}": w for w in weights}}
    return {"model": model / "config.json"}


def ranking_reward(cfg, run: Path) -> dict[str, Path]:
    """A preference algorithm with on-policy pairs (DPO's onpolicy_samples, rl/onpolicy.py) reads a
    reward model and the run's prompts: inputs, so it starts after that model is trained and reruns
    when either changes."""
    if not getattr(cfg, "onpolicy_samples", 0):
        return {}
    reward = Path(cfg.onpolicy_reward) if cfg.onpolicy_reward else run / "reward"
    prompts = Path(cfg.onpolicy_prompts) if cfg.onpolicy_prompts else run / "data" / "prompts.jsonl"
    return {"reward": reward / "metrics.json", "onpolicy prompts": prompts}


def plan(cfg: LoopConfig, configs: dict, hooks: Hooks | None = None,
         argv: list[str] | None = None) -> list[Stage]:
    """The stages in order; argv is the command line the waiting message tells the user to run again."""
    hooks = hooks or Hooks()
    run = Path(cfg.run)
    data = run / "data" / "prompts.jsonl"
    sft_w = run / "sft" / "adapter_model.safetensors"
    prefs = Path(configs["reward"].data)
    stages = [Stage("sft", run / "sft", _sft_main, configs["sft"],
                    lambda: {**model_inputs(Path(cfg.model)), "data": Path(cfg.sft)})]
    if hooks.collect is not None:
        stages.append(hooks.collect)
    elif not cfg.preferences:
        stages.append(Stage("collect", run / "collect", functools.partial(collect_from_people, argv=argv),
                            configs["collect"], {"sft": sft_w, "prompts": data}, on_fresh=_move_stale_round))
    stages += [
        Stage("reward", run / "reward", functools.partial(_reward_main, gold=hooks.reward_gold), configs["reward"],
              {"preferences": prefs}, alone=True),
        *[Stage(a.name, run / a.name, functools.partial(_algorithm_main, a), configs[a.name],
                {**{k: Path(configs[a.name].data) if k == "preferences" else run / v for k, v in a.inputs.items()},
                 **ranking_reward(configs[a.name], run)})
          for a in registry.ALGORITHMS],
        Stage("eval", run / "eval", functools.partial(_eval_main, judge=hooks.eval_judge), configs["eval"],
              {"sft": sft_w, **{a.name: run / a.name / "adapter_model.safetensors" for a in registry.ALGORITHMS},
               "reward": run / "reward" / "metrics.json", "prompts": data}),
    ]
    for k in range(2, cfg.rounds + 1):
        stages += round_plan(cfg, configs, k, hooks, argv)
    return [with_template_input(st) for st in stages]


def with_template_input(stage: Stage) -> Stage:
    """A stage given --chat_template also depends on the template file's contents: an edited
    template reruns it (and, through SFT's adapter, everything after it)."""
    path = getattr(stage.cfg, "chat_template", "")
    if not path:
        return stage
    extra = {"chat template": Path(path)}
    inputs = stage.inputs
    return replace(stage, inputs=(lambda: {**inputs(), **extra}) if callable(inputs) else {**inputs, **extra})


def round_plan(cfg: LoopConfig, configs: dict, k: int, hooks: Hooks, argv: list[str] | None) -> list[Stage]:
    """Round k's stages (loop/rounds.py): collect@k, reward@k, the algorithms @k, eval@k."""
    root = Path(cfg.run)
    run, prev = round_dir(root, k), round_dir(root, k - 1)
    rc = round_configs(configs, root, k, configs["collect"], cfg.round_policy, cfg.preferences, cfg.round_dpo_pairs,
                       cfg.round_reward)
    for name, updates in cfg.round_stages.items():  # checked here, before any stage runs
        rc[name] = apply_updates(rc[name], updates or {}, f"round_stages.{name}")
    votes = hooks.round_votes or functools.partial(people_votes, argv=argv)
    sft_w, data = root / "sft" / "adapter_model.safetensors", root / "data" / "prompts.jsonl"
    before = {a.name: prev / a.name / "adapter_model.safetensors" for a in registry.ALGORITHMS}
    stages = [Stage(f"collect@{k}", run / "collect", functools.partial(collect_round, votes=votes), rc["collect"],
                    {"sft": sft_w, "prompts": data, "eval": prev / "eval" / "metrics.json", **before},
                    on_fresh=forget_store_round),
              Stage(f"reward@{k}", run / "reward", functools.partial(_reward_main, gold=hooks.reward_gold),
                    rc["reward"], {"preferences": run / "collect" / ALL_PAIRS,
                                   **({"start": prev / "reward" / "metrics.json"} if rc["reward"].init else {})},
                    alone=True)]
    for a in registry.ALGORITHMS:
        pairs = ALL_PAIRS if cfg.round_dpo_pairs == "all" else NEW_PAIRS
        inputs = {"start": before[a.name], **({"preferences": run / "collect" / pairs}
                                              if "preferences" in a.inputs else
                                              {"reward": run / "reward" / "metrics.json", "prompts": data}),
                  **ranking_reward(rc[a.name], run)}
        stages.append(Stage(f"{a.name}@{k}", run / a.name, functools.partial(_algorithm_main, a), rc[a.name], inputs))
    stages.append(Stage(f"eval@{k}", run / "eval", functools.partial(_eval_main, judge=hooks.eval_judge), rc["eval"],
                        {"sft": sft_w, **{a.name: run / a.name / "adapter_model.safetensors"
                                          for a in registry.ALGORITHMS},
                         "reward": run / "reward" / "metrics.json", "prompts": data,
                         "before": prev / "eval" / "metrics.json"}))
    return [replace(st, fn=functools.partial(_in_round, st.fn, root, k)) for st in stages]


def _in_round(fn: Callable, root: Path, k: int, c):
    make_round_dir(root, k)  # the round's links to the run's base, data and sft (core/rounds.py)
    return fn(c)


def _move_stale_round(out: Path, status: str) -> None:
    if status == "stale":  # items from another SFT policy or prompt set: keep them aside, start anew
        move_aside(out)


def _sft_main(c):
    from sft.train import main
    return main(c)


def _reward_main(c, gold=None):
    from reward.train import main
    return main(c, gold=gold)


def _algorithm_main(alg: registry.Algorithm, c):
    return alg.main_fn()(c)


def _eval_main(c, judge=None):
    from eval.stage import main
    return main(c, judge=judge)


def run_stages(stages: list[Stage], until: str, timings_file: Path, prefix: str = "loop", jobs: int = 1) -> dict:
    """Run `stages` in order up to `until`; with jobs > 1, stages that do not read each other's outputs
    side by side, one thread each (loop/parallel.py)."""
    names = [s.name for s in stages]
    stages = stages[: names.index(until) + 1] if until in names else stages
    t0 = time.time()

    def record(seconds: dict) -> None:
        write_json(timings_file, {"stage_seconds": {n: 0.0 if s is None else s for n, s in seconds.items()},
                                  "wall_seconds": round(time.time() - t0, 1), "jobs": jobs})

    if jobs > 1:
        seconds = run_scheduled(stages, prefix, jobs, record)
    else:
        seconds = {}
        for stage in stages:
            seconds[stage.name] = run_stage(stage, prefix)
            record(seconds)
    timings = {st.name: 0.0 if seconds[st.name] is None else seconds[st.name] for st in stages if st.name in seconds}
    print(f"\n[{prefix}] stage wall times (s): " + ", ".join(f"{k} {v}" for k, v in timings.items())
          + f"; total {time.time() - t0:.0f}" + (" (stages side by side overlap)" if jobs > 1 else ""))
    return timings


def last_round(timings: dict) -> int:
    """The last round whose eval ran (or was up to date) in `timings`; 0 when none did."""
    done = [1 if name == "eval" else int(name.split("@")[1]) for name in timings
            if name == "eval" or name.startswith("eval@")]
    return max(done, default=0)


def eval_results(run: Path) -> dict | None:
    """The eval stage's metrics.json (its table was printed when it ran, or when it last ran)."""
    path = run / "eval" / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else None


def main(cfg: LoopConfig, argv: list[str] | None = None) -> dict:
    check(cfg)
    configs = stage_configs(cfg)  # every stage's options checked before any work
    run = Path(cfg.run)
    if cfg.fresh:  # people's votes (collect/, rounds/) are moved aside, never deleted
        clear_run(run, registry.names(), keep=("collect", "rounds"),
                  inputs=tuple(p for p in (cfg.model, cfg.sft, cfg.prompts, cfg.preferences, cfg.redteam,
                                           cfg.reward_model, cfg.chat_template) if p))
    info = write_tagged_prompts(cfg.prompts, run / "data" / "prompts.jsonl", cfg.eval_fraction,
                                cfg.max_eval_prompts, cfg.seed)
    cap = configs["eval"].max_prompts
    read = f" (eval reads the first {cap}: max_prompts)" if 0 < cap < info["eval"] else ""
    print(f"[loop] prompts: {info['pref']} for preferences and PPO, {info['eval']} held out for eval{read} "
          f"→ {info['path']}")
    write_json(run / "loop.json", {"config": to_dict(cfg), "prompts": info})
    try:
        timings = run_stages(plan(cfg, configs, argv=argv), cfg.until, run / "loop_timings.json",
                             jobs=resolve_jobs(cfg.jobs, cfg.device, cfg.threads))
    except AwaitingVotes as waiting:
        print(str(waiting))
        if cfg.fresh and argv is not None and rerun_argv(argv) == argv:  # fresh: true came from --config
            print("  First take `fresh: true` out of the --config file: with it, that command would move these "
                  "votes aside and sample new items.")
        return {"status": "awaiting_votes"}
    result = {"status": "done", "timings": timings}
    last = last_round(timings)
    if last:
        result["eval"] = eval_results(round_dir(run, last))
        print(f"[loop] report: {round_dir(run, last) / 'eval' / 'report.html'}")
    print(f"[loop] run directory: {run} (each stage's README.md, metrics.json and log.jsonl)")
    return result
