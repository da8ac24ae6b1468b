"""`rlhf sweep STAGE`'s options (loaded like every stage config, core/config.py)."""
from __future__ import annotations

from dataclasses import dataclass

from core.config import F


@dataclass
class SweepConfig:
    run: str = F("runs/demo", "run directory: trials go to <run>/sweeps/<stage>/<name>/trial-NNN/")
    space: str = F("", "search space YAML, one stage option per key (docs/sweep.md); required")
    trials: int = F(20, "trials in the study, counted over every worker that shares it (finished and pruned "
                        "ones; failed ones are run again)")
    parallel: int = F(1, "trials at once on this machine, each in its own process with its share of the threads")
    threads: int = F(0, "CPU threads for the whole sweep, split among the parallel trials (0 = every core)")
    storage: str = F("", "Optuna storage shared by workers on several machines: sqlite:///FILE or "
                         "postgresql+psycopg://USER:PASSWORD@HOST/DB ('' = <sweep>/study.db)")
    name: str = F("", "the sweep's name and directory ('' = the space file's name without .yaml)")
    metric: str = F("", "the held-out metric to search on ('' = the stage's default: sft val_loss, reward "
                        "heldout_loss, dpo val_loss, ppo and rloo val_objective; also reward heldout_accuracy, "
                        "dpo val_accuracy)")
    pruner: str = F("median", "stop a trial early when its held-out metric is worse than the median of earlier "
                              "trials at the same step (median), by successive halving (hyperband), or never (none)")
    stage_config: str = F("", "the stage config every trial starts from ('' = <run>/<stage>/config.yaml when the "
                              "stage has run there, else the stage's defaults)")
    quick: bool = F(False, "every trial trains half its steps: a first look, to confirm with one full run")
    baseline: bool = F(True, "the first trial runs the starting config's own values (where they lie in the space): "
                             "the search's baseline, measured the same way")
    startup_trials: int = F(0, "random trials before TPE's model takes over (0 = a third of --trials, 3 to 10)")
    seed: int = F(0, "the sampler's seed (workers that share a study each add their process id)")
