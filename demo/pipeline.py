"""`rlhf demo`: `rlhf loop` on the embedded default domain, with simulated annotators:

    data → base → sft → collect (pairs, simulated annotators, agreement, export) → reward
         → dpo → ppo → rloo → eval (win rates, safety audit, report.html)

The demo builds its data and pretrains its tiny base model, then runs the loop's own stages
(loop.run) on them with three things plugged in (loop.run.Hooks): the simulated annotation round
instead of people, and the gold oracle as the reward stage's and eval's judge. Its tuned sizes
are in demo/sizes.py. As in the loop, a stage is skipped when its config and inputs have not
changed since it last finished, and an interrupted training stage resumes from its newest
checkpoint; `--fresh` redoes everything.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from core import registry
from core.config import UserError, load_config, yaml_problem
from core.io import write_json
from demo import oracle
from demo.config import STAGES, BaseConfig, DataConfig, DemoConfig, SimulatedRoundConfig
from demo.judge import DOMAIN, reward_gold
from demo.sizes import FULL, QUICK, ROUND_DPO_PAIRS, ROUNDS

GUIDELINES = Path(__file__).with_name("guidelines.md")  # what the shop asks of its annotators
from loop.config import STAGE_NAMES, LoopConfig, stage_names
from loop.rounds import RoundCollectConfig, store_url
from loop.run import Hooks, eval_results, last_round, plan as loop_plan, run_stages, stage_configs
from loop.parallel import resolve_jobs
from loop.runner import Stage, clear_run, move_aside
from core.rounds import locate, round_dir

ORDER = STAGES  # one round's stages

# a later round's items are sampled with the round's own settings (the simulated round's, below)
ROUND_ITEM_KEYS = ("n_pairs", "temperature", "top_p", "max_new_tokens", "batch_size", "workers")


def order(rounds: int) -> tuple[str, ...]:
    """`rlhf demo`'s stages for `rounds` rounds: data, base, then the loop's."""
    return STAGES[:2] + stage_names(rounds)


def data_main(cfg: DataConfig) -> dict:
    """`rlhf data demo`: write the demo domain's data files to <run>/data."""
    from demo.data import build_demo_data

    out = Path(cfg.run) / "data"
    paths = build_demo_data(out, seed=cfg.seed, n_sft=cfg.n_sft, n_pref=cfg.n_pref, n_eval=cfg.n_eval,
                            n_redteam=cfg.n_redteam, faq_per_wording=cfg.faq_per_wording,
                            forum_per_wording=cfg.forum_per_wording)
    info = {k: str(v) for k, v in paths.items()}
    write_json(out / "metrics.json", {"domain": DOMAIN, **info})  # marks a demo run (demo/judge.py)
    print(f"[data] wrote {', '.join(sorted(info))} to {out}")
    return info


def collect_main(cfg: SimulatedRoundConfig) -> dict:
    """The annotation round with simulated annotators: pairs → votes → agreement → export."""
    from collect import commands
    from collect.generate import generate_pairs
    from demo.simulate import simulate_run

    run = Path(cfg.run)
    generate_pairs(run, policy="sft", n=cfg.n_pairs, temperature=cfg.temperature, top_p=cfg.top_p,
                   max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, seed=cfg.seed, device=cfg.device,
                   threads=cfg.threads, candidates=cfg.candidates, workers=cfg.workers,
                   pairs_per_prompt=cfg.pairs_per_prompt)
    # The shop's guidelines for this round: `rlhf collect serve --run R` shows them to people.
    shutil.copyfile(GUIDELINES, commands.guidelines_path(run))
    sim = simulate_run(run, n_annotators=cfg.annotators, careless=cfg.careless, seed=cfg.seed,
                       overlap=cfg.overlap, gold_rate=cfg.gold_rate, both_bad_below=cfg.both_bad_below)
    report = commands.report(run, overlap=cfg.overlap)
    stats = commands.export(run, min_agreement=cfg.min_agreement)
    choice = report["agreement"]["choice"] or {}
    metrics = {"n_votes": sim["n_votes"], "n_pairs": stats["n_pairs"], "choice_agreement": choice.get("value"),
               "choice_method": choice.get("method"), "flagged_annotators": stats["flagged_annotators"]}
    write_json(run / "collect" / "metrics.json", metrics)
    return metrics


def simulated_votes(sim: SimulatedRoundConfig):
    """A later round's votes (loop/rounds.py collect_round's `votes`): the same simulated
    annotators vote on the round's new items in the run's store."""
    def votes(cfg: RoundCollectConfig) -> dict:
        from demo.simulate import simulate_run

        root, k = locate(cfg.run)
        out = simulate_run(root, n_annotators=sim.annotators, careless=sim.careless, seed=sim.seed * 1000 + k,
                           overlap=sim.overlap, gold_rate=sim.gold_rate, db=store_url(root, cfg.db),
                           both_bad_below=sim.both_bad_below)
        return {"n_votes": out["n_votes"], "min_agreement": sim.min_agreement}
    return votes


def _read_mapping(path: str) -> dict:
    import yaml

    from core.config import ConfigError

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        raise ConfigError(yaml_problem(p, e)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping of key: value")
    return data


def loop_config(cfg: DemoConfig, sim: SimulatedRoundConfig) -> LoopConfig:
    """The loop on the demo's data and base, with the demo's sizes (a stage YAML given to the demo
    overrides them). The reward model is the embedded MiniLM-L6 encoder ('' in RewardConfig). A
    later round samples its items as the simulated round `sim` does."""
    run, sizes = Path(cfg.run), QUICK if cfg.quick else FULL
    stages = {name: {**sizes.get(name, {}), **_read_mapping(getattr(cfg, f"{name}_config"))}
              if getattr(cfg, f"{name}_config", "") else dict(sizes.get(name, {}))
              for name in STAGE_NAMES if name != "collect"}
    stages["reward"].setdefault("model", "")
    stages["collect"] = {k: getattr(sim, k) for k in ROUND_ITEM_KEYS} | {"min_pairs": 1}
    return LoopConfig(run=cfg.run, seed=cfg.seed, device=cfg.device, dtype=cfg.dtype, threads=cfg.threads,
                      rounds=cfg.rounds, round_policy=cfg.round_policy, round_stages=ROUNDS,
                      round_dpo_pairs=ROUND_DPO_PAIRS,
                      gradient_checkpointing=cfg.gradient_checkpointing, model=str(run / "base"),
                      sft=str(run / "data" / "sft.jsonl"), prompts=str(run / "data" / "prompts.jsonl"),
                      redteam=str(run / "data" / "redteam.jsonl"), stages=stages)


def _own_config(cls, name: str, cfg: DemoConfig):
    """The config of a stage only the demo has (data, base, the simulated round)."""
    runtime = {} if cls is DataConfig else {"device": cfg.device, "dtype": cfg.dtype, "threads": cfg.threads,
                                             "gradient_checkpointing": cfg.gradient_checkpointing}
    if runtime.get("dtype") == "auto":  # the stage's own default (the base's: float32, demo/config.py)
        del runtime["dtype"]
    return load_config(cls, getattr(cfg, f"{name}_config", "") or None, {"run": cfg.run, "seed": cfg.seed, **runtime},
                       (QUICK if cfg.quick else FULL).get(name))


def plan(cfg: DemoConfig) -> list[Stage]:
    """data and base, then the loop's stages with the demo's hooks."""
    from demo.base import main as base_main

    run = Path(cfg.run)
    data = run / "data"
    sim = _own_config(SimulatedRoundConfig, "collect", cfg)
    lcfg = loop_config(cfg, sim)
    configs = stage_configs(lcfg)  # every stage's options checked before any work
    collect = Stage("collect", run / "collect", collect_main, sim,
                    {"sft": run / "sft" / "adapter_model.safetensors", "prompts": data / "prompts.jsonl"},
                    on_fresh=lambda out, status: move_aside(out))  # votes on other pairs: keep them aside
    hooks = Hooks(collect=collect, round_votes=simulated_votes(sim), reward_gold=reward_gold(), eval_judge=oracle)
    return [Stage("data", data, data_main, _own_config(DataConfig, "data", cfg)),
            Stage("base", run / "base", base_main, _own_config(BaseConfig, "base", cfg),
                  {"corpus": data / "corpus.txt"}),
            *loop_plan(lcfg, configs, hooks)]


def main(cfg: DemoConfig) -> dict:
    if cfg.rounds < 1:
        raise UserError(f"--rounds {cfg.rounds}: must be at least 1")
    if cfg.jobs < 0:
        raise UserError(f"--jobs {cfg.jobs}: must be 0 (auto) or more")
    if cfg.until and cfg.until not in order(cfg.rounds):
        raise UserError(f"--until {cfg.until!r}: not a stage (one of {', '.join(STAGES)}"
                        + (f", or NAME@K for K in 2..{cfg.rounds}" if cfg.rounds > 1 else "") + ")")
    run = Path(cfg.run)
    stages = plan(cfg)
    if cfg.fresh:  # the demo's votes are simulated: nothing to keep
        clear_run(run, registry.names(), inputs=tuple(p for p in (cfg.data_config, cfg.base_config, cfg.sft_config,
                  cfg.collect_config, cfg.reward_config, cfg.dpo_config, cfg.ppo_config, cfg.rloo_config,
                  cfg.eval_config) if p))
    timings = run_stages(stages, cfg.until, run / "demo_timings.json", prefix="demo",
                         jobs=resolve_jobs(cfg.jobs, cfg.device, cfg.threads))
    result = {"timings": timings}
    last = last_round(timings)
    if last:
        result["eval"] = eval_results(round_dir(run, last))
        print(f"[demo] report: {round_dir(run, last) / 'eval' / 'report.html'}")
    print(f"[demo] run directory: {run} (each stage's README.md, metrics.json and log.jsonl)")
    return result
