"""`rlhf sweep STAGE`: an Optuna study over a stage's options, judged on its held-out metric.

    <run>/sweeps/<stage>/<name>/
        study.db              the study (unless --storage names a shared one)
        trial-000/            a normal stage output directory (adapter, metrics.json, log.jsonl)
        trial-000.yaml        the config it ran with: `rlhf STAGE --config` repeats it
        trial-000.console.log its output
        trials.json           every trial: state, value, values, held-out curve, seconds
        best.yaml             the starting config with the best trial's values (`rlhf STAGE --config`)

TPE proposes the values (Bergstra et al. 2011); the median rule or Hyperband (Li et al. 2018)
stops trials whose held-out curve falls behind. Workers on several machines share one study
through Optuna's database storage: each asks the database for its next trial, so no two run the
same trial number, and no scheduler of ours is involved. A worker that dies leaves its trial
running in the database; its heartbeat stops, and the next worker to start marks it failed,
so it is run again.
"""
from __future__ import annotations

import os
import threading
import time
import warnings
from dataclasses import replace
from pathlib import Path

from tqdm.auto import tqdm

from core.config import ConfigError, UserError, load_config, mask_url, to_dict

from .config import SweepConfig
from .objective import VAL_PROMPTS, Metric, metric_for
from .space import Param, load_space, suggest
from .trial import TrialFailed, halve_steps, run_trial, stop, trial_config

HEARTBEAT = 60  # seconds between a running trial's heartbeats in the storage; a trial silent for
GRACE = 240  # this long belongs to a dead worker


def stage_class(stage: str) -> type:
    from core import registry
    from core.config import RewardConfig, SFTConfig

    classes = {"sft": SFTConfig, "reward": RewardConfig}
    if stage in classes:
        return classes[stage]
    return registry.get(stage).config_class()


def starting_config(cfg: SweepConfig, stage: str):
    """What every trial starts from: --stage_config, else the stage's config in the run, else its
    defaults; always on this run."""
    cls = stage_class(stage)
    given = cfg.stage_config or (Path(cfg.run) / stage / "config.yaml")
    if cfg.stage_config and not Path(given).exists():
        raise ConfigError(f"{given}: --stage_config file not found")
    base = replace(load_config(cls, given if Path(given).exists() else None), run=cfg.run, out="")
    if getattr(base, "val_prompts", None) == 0:  # PPO, RLOO: the held-out objective needs its prompts
        base = replace(base, val_prompts=VAL_PROMPTS)
    return base


def trial_threads(cfg: SweepConfig) -> int:
    """Each trial's share of the sweep's threads (--threads, 0 = every core) among --parallel."""
    return max(1, (cfg.threads or os.cpu_count() or 1) // cfg.parallel)


def sweep_dir(cfg: SweepConfig, stage: str) -> Path:
    return Path(cfg.run) / "sweeps" / stage / (cfg.name or Path(cfg.space).stem)


def check(cfg: SweepConfig) -> None:
    if not cfg.space:
        raise ConfigError("key 'space': give the search space file (--space FILE.yaml)")
    if cfg.trials < 1 or cfg.parallel < 1:
        raise ConfigError(f"keys 'trials' and 'parallel' must be at least 1, got {cfg.trials} and {cfg.parallel}")
    if cfg.pruner not in ("median", "hyperband", "none"):
        raise ConfigError(f"key 'pruner' must be median, hyperband or none, got {cfg.pruner!r}")
    if cfg.storage and not cfg.storage.startswith(("sqlite:///", "postgresql")):
        raise ConfigError(f"key 'storage': an SQLAlchemy URL, sqlite:///FILE or postgresql+psycopg://..., "
                          f"got {mask_url(cfg.storage)!r}")
    if not Path(cfg.run).is_dir():
        raise ConfigError(f"{cfg.run}: no such run directory")


def make_pruner(name: str, base, trials: int):
    import optuna

    first = max(1, getattr(base, "eval_steps", 1))  # the step of a trial's first held-out value
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "hyperband":  # the largest budget: the first finished trial's last step
        return optuna.pruners.HyperbandPruner(min_resource=first, max_resource="auto", reduction_factor=3)
    # the median of at least two finished trials, from the second held-out value on
    return optuna.pruners.MedianPruner(n_startup_trials=min(5, max(2, trials // 4)), n_warmup_steps=first + 1)


def connect(url: str, attempts: int = 5):
    """Optuna's database storage at `url`. Workers that start together on a new database race to
    create its tables; the loser's insert fails on a unique key, or (PostgreSQL) its CREATE TABLE
    on a table just made (DuplicateTable, a ProgrammingError), and its next try finds them made."""
    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    # SQLite: wait up to 30 s for another worker's write instead of failing after the default 5
    kwargs = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT,
                                              grace_period=GRACE)
        except (IntegrityError, OperationalError, ProgrammingError) as e:
            if attempt == attempts - 1:
                raise UserError(f"{mask_url(url)}: cannot open the study's database: "
                                f"{str(e).splitlines()[0]}") from None
            time.sleep(0.5 * (attempt + 1))


def open_study(cfg: SweepConfig, stage: str, metric: Metric, base, params: list[Param], where: Path):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Heartbeats keep a dead worker's trial from counting for ever (see above); Optuna marks them
    # experimental and expects them with Study.optimize, whose one-process loop cannot run trials
    # in child processes with their own thread counts, so ask/tell records them here (Worker).
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    url = cfg.storage or f"sqlite:///{(where / 'study.db').resolve()}"
    storage = connect(url)
    startup = cfg.startup_trials or min(10, max(3, cfg.trials // 3))
    seed = cfg.seed + (os.getpid() if cfg.storage else 0)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)
    name = f"{stage}/{where.name}"
    pruner = make_pruner(cfg.pruner, halve_steps(base) if cfg.quick else base, cfg.trials)
    space = {p.name: p.describe() for p in params}
    try:  # one worker creates the study (the database's unique name decides which): it enqueues the baseline
        study = optuna.create_study(storage=storage, sampler=sampler, pruner=pruner, study_name=name,
                                    direction=metric.direction)
        study.set_user_attr("sweep", {"metric": metric.name, "space": space})  # one write: workers read it whole
        note = enqueue_baseline(study, base, params) if cfg.baseline else "no baseline trial (--baseline false)"
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(storage=storage, sampler=sampler, pruner=pruner, study_name=name)
        made = study.user_attrs.get("sweep")  # None for a moment after another worker made the study
        if made and (made.get("metric") != metric.name or made.get("space") != space):
            raise UserError(f"{mask_url(url)}: study '{name}' was made with metric {made.get('metric')} over "
                            f"{', '.join(made.get('space', {}).values())}; give another --name for another "
                            f"search") from None
        done = len(study.get_trials(deepcopy=False))
        note = f"continuing the study, which holds {done} trial(s)"
    optuna.storages.fail_stale_trials(study)
    study_id = storage.get_study_id_from_name(name)

    def heartbeat(number: int) -> None:
        storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(study_id, number))
    return study, heartbeat, note


def counted(study) -> int:
    """Trials that count towards --trials: finished, pruned or running somewhere."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)))


def enqueue_baseline(study, base, params: list[Param]) -> str:
    values = {p.name: getattr(base, p.name) for p in params}
    outside = [f"{p.name}={values[p.name]}" for p in params if not p.contains(values[p.name])]
    if outside:
        return f"no baseline trial: the starting config's {', '.join(outside)} lies outside the space"
    study.enqueue_trial(values)
    return "the first trial is the baseline: the starting config's own values"


class Worker:
    """Runs trials on this machine, `parallel` at a time, until the study holds `trials`."""

    def __init__(self, cfg: SweepConfig, stage: str, study, heartbeat, base, params: list[Param], metric: Metric,
                 where: Path):
        self.cfg, self.stage, self.study, self.heartbeat, self.base = cfg, stage, study, heartbeat, base
        self.params, self.metric, self.where = params, metric, where
        self.threads = trial_threads(cfg)
        self.lock, self.halt = threading.Lock(), threading.Event()
        self.errors: list[BaseException] = []
        self.procs: dict[int, object] = {}  # trial number -> its running process
        self.bar = None

    def _next(self):
        with self.lock:
            if self.halt.is_set() or counted(self.study) >= self.cfg.trials:
                return None
            return self.study.ask()

    def _one(self, trial) -> None:
        import optuna
        from optuna.trial import TrialState

        t0 = time.time()
        values = suggest(trial, self.params)
        out = self.where / f"trial-{trial.number:03d}"
        cfg = trial_config(self.base, values, out, self.threads, self.cfg.quick)
        trial.set_user_attr("dir", out.name)
        try:
            value = run_trial(trial, self.stage, cfg, self.metric, heartbeat=lambda: self.heartbeat(trial.number),
                              started=lambda proc: self.procs.__setitem__(trial.number, proc))
        except optuna.TrialPruned as e:
            trial.set_user_attr("seconds", round(time.time() - t0, 1))
            self.study.tell(trial, state=TrialState.PRUNED)
            self._say(f"trial {trial.number}: pruned ({e}) after {time.time() - t0:.0f} s  {_values(values)}")
            return
        except TrialFailed as e:
            self.study.tell(trial, state=TrialState.FAIL)
            if not self.halt.is_set():
                self._say(f"trial {trial.number}: failed, {e}")
            return
        except BaseException:
            self.study.tell(trial, state=TrialState.FAIL)
            raise
        finally:
            self.procs.pop(trial.number, None)
        trial.set_user_attr("seconds", round(time.time() - t0, 1))
        self.study.tell(trial, value)
        self._say(f"trial {trial.number}: {self.metric.name} {value:.4f} in {time.time() - t0:.0f} s  {_values(values)}")

    def _say(self, line: str) -> None:
        tqdm.write(f"[sweep] {line}")
        if self.bar is not None:
            self.bar.update(1)

    def _loop(self, done: threading.Event) -> None:
        try:
            while (trial := self._next()) is not None:
                self._one(trial)
        except BaseException as e:  # noqa: BLE001 - the first error stops the others, then is raised
            self.errors.append(e)
            self.halt.set()
        finally:
            done.set()

    def run(self) -> None:
        self.bar = tqdm(total=self.cfg.trials, initial=min(self.cfg.trials, counted(self.study)), unit="trial",
                        desc=f"sweep {self.stage}", dynamic_ncols=True)
        # Waiting on events, not Thread.join: a join that Ctrl-C interrupts can leave its thread
        # looking finished while it runs on (CPython 3.11), and its trial would stay "running".
        done = [threading.Event() for _ in range(self.cfg.parallel)]
        try:
            for d in done:
                threading.Thread(target=self._loop, args=(d,), name="sweep-worker", daemon=True).start()
                time.sleep(0.5)  # the first ask writes the study's first rows alone
            while not all(d.is_set() for d in done):
                time.sleep(0.2)
        except KeyboardInterrupt:
            self.halt.set()  # no new trial; the running ones are stopped and marked failed (a re-run redoes them)
            for proc in list(self.procs.values()):
                stop(proc)
            deadline = time.time() + 20  # each worker marks its trial failed once the process is gone
            while not all(d.is_set() for d in done) and time.time() < deadline:
                time.sleep(0.2)
            raise
        finally:
            self.bar.close()
        if self.errors:
            raise self.errors[0]


def _values(values: dict) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def stage_check(stage: str):
    """The stage's own option check (check_config: no file is read), or None (SFT has none)."""
    import importlib

    from core import registry

    module = "reward.train" if stage == "reward" else \
        next((a.main.partition(":")[0] for a in registry.ALGORITHMS if a.name == stage), None)
    return getattr(importlib.import_module(module), "check_config", None) if module else None


def main(cfg: SweepConfig, stage: str) -> dict:
    from .results import write_results

    check(cfg)
    base = starting_config(cfg, stage)
    params = load_space(cfg.space, base, check=stage_check(stage))
    metric = metric_for(stage, cfg.metric, [p.name for p in params])
    where = sweep_dir(cfg, stage)
    where.mkdir(parents=True, exist_ok=True)
    study, heartbeat, note = open_study(cfg, stage, metric, base, params, where)
    threads = trial_threads(cfg)
    print(f"[sweep] {stage}: {cfg.trials} trials on {metric.name} ({metric.direction}), {cfg.parallel} at a time "
          f"with {threads} thread(s) each, pruner {cfg.pruner}{', half steps (--quick)' if cfg.quick else ''}; "
          f"{note}; output in {where}", flush=True)
    for p in params:
        print(f"  {p.describe()}")
    if getattr(base, "val_prompts", 0):
        print(f"  val_prompts {base.val_prompts}: training prompts kept out of every trial's training, for the "
              f"held-out objective (rl/heldout.py)")
    interrupted = False
    try:
        Worker(cfg, stage, study, heartbeat, base, params, metric, where).run()
    except KeyboardInterrupt:
        interrupted = True
    finally:  # whatever happened, the table and trials.json say what the study holds
        summary = write_results(study, where, stage, base, params, metric, to_dict(cfg))
    if interrupted:
        print("\n[sweep] interrupted: the finished trials are kept in the study; the same command continues it "
              "(the interrupted trials run again)", flush=True)
        raise SystemExit(130)
    return summary
