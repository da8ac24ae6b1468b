"""The `rlhf` command line. Each stage command is `rlhf STAGE [--config FILE] [--key value ...]`:
the stage's dataclass defaults ← the YAML file ← the options. Stage code is imported lazily so
`rlhf --help` answers at once. The RL algorithms' commands come from core/registry.py.

The CLI sits on top of the stages and demo/: it is where the demo's gold oracle is handed to the
stages that take a judge (`rlhf reward`, `rlhf eval`), for a demo run only (demo/judge.py).
"""
from __future__ import annotations

import dataclasses
import re
import sys
from functools import partial
from typing import Callable

from core import registry
from core.config import ConfigError, UserError, field_help, load_config

USAGE_HEAD = """usage: rlhf COMMAND [options]

The human-feedback loop, one command per stage (each reads and writes runs/<name>/):
  loop       the whole loop on your own model and data: {loop_order}
  demo       the whole loop on the embedded default domain with simulated annotators
  data       `data demo` builds the demo domain's data; `data check FILE` checks SFT, preference or prompt data
  base       build the tokenizer and pretrain the tiny embedded base model
  sft        supervised fine-tuning of a LoRA chatbot (TRL SFTTrainer + PEFT)
  collect    the annotation app and its data: serve, generate, import, simulate, export, users, report
  reward     train the reward model (`reward score` scores a file of prompt/response rows)
"""
USAGE_TAIL = """  sweep      hyperparameter trials of one stage on its held-out metric (Optuna; `sweep --help`)
  eval       compare the run's policies: win rates, safety audit, perplexity, report.html
             (`eval --to-collect --a sft --b ppo`: blind A/B items for annotators)
  chat       chat with a policy in the terminal (streamed tokens)
  export     merge a LoRA adapter into a standalone Hugging Face model (--merge OUT)

Run `rlhf COMMAND --help` for a command's options. Example:
  rlhf sft --run runs/demo --config configs/sft/tiny.yaml --lora_r 16
"""


def _stage_help(name: str, cls: type, doc: str) -> str:
    lines = [f"usage: rlhf {name} [--config FILE] [--key value ...]", "", doc, "", "options:"]
    lines.append(f"  {'--config FILE':34s} YAML file with any of the keys below")
    for key, help_, default in field_help(cls):
        lines.append(f"  --{key:32s} {help_} (default: {default!r})")
    return "\n".join(lines)


def _split_config(args: list[str]) -> tuple[str | None, list[str]]:
    cfg_path, rest, i = None, [], 0
    while i < len(args):
        if args[i] == "--config":
            if i + 1 >= len(args):
                raise ConfigError("command line: --config needs a file")
            cfg_path, i = args[i + 1], i + 2
        elif args[i].startswith("--config="):
            cfg_path, i = args[i].split("=", 1)[1], i + 1
        else:
            rest.append(args[i])
            i += 1
    return cfg_path, rest


def run_stage(name: str, cls: type, main: Callable, args: list[str], doc: str = "") -> int:
    if "-h" in args or "--help" in args:
        print(_stage_help(name, cls, doc))
        return 0
    cfg_path, rest = _split_config(args)
    cfg = load_config(cls, cfg_path, rest)
    main(cfg)
    return 0


def _cmd_sft(args):
    from core.config import SFTConfig
    from sft.train import main

    return run_stage("sft", SFTConfig, main, args, "Supervised fine-tuning of a LoRA adapter.")


def _cmd_collect(args):
    if args and args[0] == "simulate":  # judges by the demo's oracle, so it lives in demo/
        from demo.simulate import cli_main

        return cli_main(args[1:])
    from collect.cli import main

    return main(args)


def _cmd_reward(args):
    from core.config import RewardConfig

    if args and args[0] == "score":  # --run DIR --file rows.jsonl [--out F] [--batch_size N]
        from reward.score import cli_score

        return cli_score(args[1:])
    from demo.judge import reward_gold_for_run
    from reward.train import main

    return run_stage("reward", RewardConfig, lambda cfg: main(cfg, gold=reward_gold_for_run(cfg.run)), args,
                     "Train the reward model on preference pairs (a demo run also reports accuracy "
                     "against the demo's gold oracle).")


def _cmd_algorithm(alg: registry.Algorithm, args):
    return run_stage(alg.name, alg.config_class(), alg.main_fn(), args, alg.help + ".")


def _cmd_base(args):
    from demo.base import main
    from demo.config import BaseConfig

    return run_stage("base", BaseConfig, main, args, "Train the BPE tokenizer and pretrain the tiny base model.")


def _cmd_data(args):
    if args and args[0] == "check":
        from sft.check_cli import main as check_main

        return check_main(args[1:])
    if args and args[0] == "demo":
        from demo.config import DataConfig
        from demo.pipeline import data_main

        return run_stage("data demo", DataConfig, data_main, args[1:], "Build the demo domain's data files.")
    print("usage: rlhf data demo [--run DIR] | rlhf data check FILE [--kind KIND] [--model DIR] [--val FILE]")
    return 0 if args and args[0] in ("-h", "--help") else 2


def _cmd_eval(args):
    from core.config import EvalConfig
    from demo.judge import eval_judge
    from eval.stage import main

    return run_stage("eval", EvalConfig, lambda cfg: main(cfg, judge=eval_judge(cfg.run)), args,
                     "Compare the run's policies (win rates, safety audit, perplexity, KL) and write "
                     "eval/report.html (a demo run also gets the demo's gold oracle as judge).")


def _cmd_sweep(args):
    from sweep.config import SweepConfig
    from sweep.objective import stages

    doc = ("Hyperparameter trials of one stage, each judged on the stage's own held-out metric "
           "(docs/sweep.md).\nExample: rlhf sweep dpo --run runs/demo --space configs/sweep/dpo.yaml "
           "--trials 8 --parallel 2")
    if not args or args[0].startswith("-"):
        if args and args[0] in ("-h", "--help"):
            return run_stage(f"sweep {{{','.join(stages())}}}", SweepConfig, lambda cfg: None, args, doc)
        raise UserError(f"give the stage to sweep first: rlhf sweep {{{','.join(stages())}}} --space FILE ...")
    from sweep.study import main

    stage = args[0]
    if stage not in stages():
        raise UserError(f"cannot sweep '{stage}': the stages with a held-out metric are {', '.join(stages())}")
    return run_stage(f"sweep {stage}", SweepConfig, lambda cfg: main(cfg, stage), args[1:], doc)


def _cmd_chat(args):
    from core.config import ChatConfig
    from core.chat import main

    return run_stage("chat", ChatConfig, main, args, "Chat with a policy of the run in the terminal.")


def _cmd_export(args):
    from core.config import ExportConfig
    from core.export import main

    return run_stage("export", ExportConfig, main, args, "Merge an adapter into a standalone model.")


def _cmd_loop(args):
    from loop.collect import AWAITING_VOTES_EXIT
    from loop.config import LoopConfig
    from loop.run import main

    result: dict = {}
    code = run_stage("loop", LoopConfig, lambda cfg: result.update(main(cfg, argv=["loop", *args])), args,
                     f"The whole loop on your own model: {loop_order()}.\n"
                     "Example: rlhf loop --model DIR --sft sft.jsonl --prompts prompts.jsonl "
                     "[--preferences prefs.jsonl] --run runs/mine [--quick]\n"
                     f"Exit status: 0 done, 2 a mistake in the input, {AWAITING_VOTES_EXIT} stopped to wait "
                     "for the annotators' votes.")
    return AWAITING_VOTES_EXIT if result.get("status") == "awaiting_votes" else code


def _cmd_demo(args):
    from demo.config import DemoConfig
    from demo.pipeline import main

    return run_stage("demo", DemoConfig, main, args, "The whole loop on the embedded default domain.")


def loop_order() -> str:
    return " → ".join(("sft", "collect", "reward", *registry.names(), "eval"))


def usage() -> str:
    algs = "".join(f"  {a.name:10s} {a.help}\n" for a in registry.ALGORITHMS)
    return USAGE_HEAD.format(loop_order=loop_order()) + algs + USAGE_TAIL


def config_classes() -> dict[str, type]:
    """The config class of every command that takes `--config FILE` (configs/<name>/*.yaml)."""
    from core.config import ChatConfig, EvalConfig, ExportConfig, RewardConfig, SFTConfig
    from demo.config import BaseConfig, DataConfig, DemoConfig, SimulatedRoundConfig
    from loop.config import LoopConfig

    return {"loop": LoopConfig, "data": DataConfig, "base": BaseConfig, "sft": SFTConfig,
            "collect": SimulatedRoundConfig, "reward": RewardConfig,
            **{a.name: a.config_class() for a in registry.ALGORITHMS}, "eval": EvalConfig, "chat": ChatConfig,
            "export": ExportConfig, "demo": DemoConfig}


def commands() -> dict[str, Callable[[list[str]], int]]:
    return {"loop": _cmd_loop, "demo": _cmd_demo, "data": _cmd_data, "base": _cmd_base, "sft": _cmd_sft,
            "collect": _cmd_collect, "reward": _cmd_reward,
            **{a.name: partial(_cmd_algorithm, a) for a in registry.ALGORITHMS},
            "eval": _cmd_eval, "sweep": _cmd_sweep, "chat": _cmd_chat, "export": _cmd_export}


def interrupted_hint(command: str) -> str:
    """What to do after Ctrl-C: the loops resume by themselves, a training stage with --resume."""
    if command in ("loop", "demo"):
        return ("run the same command again: finished stages are skipped and the interrupted one resumes "
                "from its last checkpoint")
    cls = config_classes().get(command)
    if cls is not None and "resume" in {f.name for f in dataclasses.fields(cls)}:
        return "checkpoints are kept: run the same command with --resume to go on from the last one"
    return "run the same command again"


# A warning the user can do nothing about, on every stage's stderr: peft's PeftModel reads
# transformers' renamed is_gradient_checkpointing (peft's to change, not ours or the user's).
QUIET_WARNINGS = ("`is_gradient_checkpointing` is deprecated",)


def main(argv: list[str] | None = None) -> int:
    import warnings

    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(message), category=FutureWarning)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    cmd = commands().get(argv[0])
    if cmd is None:
        print(f"rlhf: unknown command '{argv[0]}'\n\n{usage()}", file=sys.stderr)
        return 2
    try:
        return cmd(argv[1:]) or 0
    except UserError as e:
        print(f"rlhf {argv[0]}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nrlhf {argv[0]}: interrupted; {interrupted_hint(argv[0])}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
