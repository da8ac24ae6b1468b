"""`rlhf sweep`: the search-space file, the metric rules, and real trials of the SFT stage on the
tiny test model (each trial is the stage's own command in a child process)."""
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from core.config import ConfigError, DPOConfig, RewardConfig, RLOOConfig, SFTConfig, UserError, load_config
from sweep.config import SweepConfig
from sweep.objective import metric_for
from sweep.space import load_space
from sweep.trial import evaluations, halve_steps

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- the space file

def test_space_reads_every_kind_and_numbers_as_yaml_writes_them(tmp_path):
    space = write(tmp_path / "s.yaml", "learning_rate: {log_uniform: [1e-5, 1e-3]}\n"
                                       "beta: {uniform: [0.05, 0.5]}\n"
                                       "max_steps: {int: [40, 160], step: 20}\n"
                                       "batch_size: {log_int: [4, 32]}\n"
                                       "loss_type: {choice: [sigmoid, ipo]}\n")
    params = {p.name: p for p in load_space(space, DPOConfig())}
    assert (params["learning_rate"].kind, params["learning_rate"].low, params["learning_rate"].high) == \
        ("log_uniform", 1e-5, 1e-3)  # "1e-5" is a string to YAML 1.1; read as the number it says
    assert (params["max_steps"].low, params["max_steps"].high, params["max_steps"].step) == (40, 160, 20)
    assert params["loss_type"].choices == ("sigmoid", "ipo")
    assert params["max_steps"].contains(60) and not params["max_steps"].contains(50)
    assert params["learning_rate"].contains(1e-4) and not params["learning_rate"].contains(2e-3)


@pytest.mark.parametrize("text, line, words", [
    ("learning_rate: {log_uniform: [1e-5, 1e-3]}\nlearnig_rate: {uniform: [0.1, 0.2]}\n", 2,
     ["unknown option 'learnig_rate'", "did you mean 'learning_rate'"]),
    ("out: {choice: [a, b]}\n", 1, ["option 'out'", "not searched"]),
    ("beta: {uniform: [0.5, 0.1]}\n", 1, ["'beta'", "low end 0.5 must be below the high end 0.1"]),
    ("learning_rate: {log_uniform: [0, 1e-3]}\n", 1, ["'learning_rate'", "log range must be above 0"]),
    ("max_steps: {uniform: [10, 20]}\n", 1, ["'max_steps'", "takes int", "use int, log_int or choice"]),
    ("beta: {int: [1, 3]}\n", 1, ["'beta' is not an integer option"]),
    ("beta: {normal: [0, 1]}\n", 1, ["unknown range kind 'normal'"]),
    ("beta: [0.1, 0.2]\n", 1, ["'beta'", "give one of uniform"]),
    ("max_steps: {int: [10, 25], step: 10}\n", 1, ["step must be a whole number", "divides high - low"]),
    ("batch_size: {choice: [8, sixteen]}\n", 1, ["'batch_size' must be int", "'sixteen'"]),
    ("beta: {uniform: [0.1, lots]}\n", 1, ["'beta'", "'lots' is not a number"]),
])
def test_space_errors_name_the_file_line_and_key(tmp_path, text, line, words):
    space = write(tmp_path / "space.yaml", text)
    with pytest.raises(ConfigError) as err:
        load_space(space, DPOConfig())
    assert str(err.value).startswith(f"{space}:{line}: ")
    for w in words:
        assert w in str(err.value)


def test_a_space_that_is_a_directory_or_not_utf8_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=f"^{tmp_path}: a directory, not a search space file$"):
        load_space(tmp_path, DPOConfig())
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("beta: {choice: [0.1]}  # caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml: not UTF-8 text \(byte 28\)$"):
        load_space(bad, DPOConfig())


def test_a_choice_the_stage_refuses_stops_the_sweep_before_any_trial(tmp_path):
    from sweep.study import stage_check

    space = write(tmp_path / "space.yaml", "beta: {uniform: [0.05, 0.3]}\nloss_type: {choice: [sigmoid, bogus]}\n")
    load_space(space, DPOConfig())  # the type is right: without the stage's check it passes
    with pytest.raises(ConfigError, match=rf"^{space}:2: loss_type must be one of sigmoid, ipo, robust, got 'bogus'"):
        load_space(space, DPOConfig(), check=stage_check("dpo"))
    write(space, "kl_estimator: {choice: [k1, k9]}\n")
    with pytest.raises(ConfigError, match=rf"^{space}:1: kl_estimator must be k1 or k3"):
        load_space(space, RLOOConfig(), check=stage_check("rloo"))
    assert stage_check("sft") is None and stage_check("reward") is not None


def test_the_shipped_spaces_load_for_their_stage():
    from sweep.study import stage_class

    files = sorted((ROOT / "configs" / "sweep").glob("*.yaml"))
    assert {f.stem for f in files} >= {"sft", "reward", "dpo", "dpo-tiny", "ppo", "rloo-tiny"}
    for f in files:
        stage = f.stem.split("-")[0]
        params = load_space(f, stage_class(stage)())
        metric_for(stage, "", [p.name for p in params])  # each searches on its stage's default metric
    tiny = {p.name: p for p in load_space(ROOT / "configs" / "sweep" / "dpo-tiny.yaml", DPOConfig())}
    demo = load_config(DPOConfig, ROOT / "configs" / "dpo" / "tiny.yaml")  # the demo's values are its baseline
    assert tiny["learning_rate"].contains(demo.learning_rate) and tiny["max_steps"].contains(demo.max_steps)


def test_a_loss_that_depends_on_a_searched_option_is_refused():
    with pytest.raises(ConfigError, match="val_loss measures something else at each value of beta.*val_accuracy"):
        metric_for("dpo", "", ["learning_rate", "beta"])
    assert metric_for("dpo", "val_accuracy", ["beta"]).direction == "maximize"
    # on-policy pairs change the held-out pairs themselves: no DPO metric ranks them, and no other is offered
    for metric in ("val_loss", "val_accuracy"):
        with pytest.raises(ConfigError, match=f"dpo's {metric} measures something else at each value of "
                                              "onpolicy_samples, so it cannot rank them$"):
            metric_for("dpo", metric, ["onpolicy_samples"])
    # the reward model's held-out loss is the plain pairwise loss whatever margin or centering trained it,
    # but hard labels minimise it by construction, and a length covariate learns outside the reward head
    assert metric_for("reward", "", ["margin", "center_coef"]).name == "heldout_loss"
    for option in ("soft_labels", "length_covariate"):
        with pytest.raises(ConfigError, match=f"heldout_loss measures something else at each value of {option}"
                                              ".*heldout_accuracy"):
            metric_for("reward", "", ["learning_rate", option])
        assert metric_for("reward", "heldout_accuracy", [option]).direction == "maximize"
    with pytest.raises(ConfigError, match="reward reports heldout_loss, heldout_accuracy, not 'gold'"):
        metric_for("reward", "gold", [])
    # PPO and RLOO: the held-out objective, whose β and sampling are not searched with it
    assert metric_for("rloo", "", ["learning_rate", "kl_coef"]).name == "val_objective"
    with pytest.raises(ConfigError, match="ppo's val_objective measures something else at each value of temperature"):
        metric_for("ppo", "", ["temperature"])


def test_quick_halves_the_steps_and_doubles_the_evaluations():
    cfg = halve_steps(load_config(DPOConfig, None, {"max_steps": 80, "eval_steps": 10}))
    assert (cfg.max_steps, cfg.eval_steps) == (40, 5)
    cfg = halve_steps(load_config(RewardConfig, None, {"num_epochs": 2.0, "eval_steps": 20}))
    assert (cfg.max_steps, cfg.num_epochs, cfg.eval_steps) == (-1, 1.0, 10)


def test_evaluation_rows_are_read_once_each_and_a_torn_line_waits(tmp_path):
    log = write(tmp_path / "log.jsonl", '{"step": 5, "loss": 2.0}\n{"step": 10, "eval_loss": 1.5}\n'
                                        '{"step": 10, "eval_loss": 1.5}\n{"step": 20, "eval_lo')
    assert evaluations(log, "eval_loss") == [(10, 1.5)]
    assert evaluations(tmp_path / "missing.jsonl", "eval_loss") == []


# ----------------------------------------------------------------------------- real trials

@pytest.fixture
def sweep_run(tiny_run, tmp_path):
    """A copy of the tiny run (base, data, SFT) and an SFT config with 3 held-out evaluations."""
    run = tmp_path / "run"
    for part in ("base", "data", "sft"):
        shutil.copytree(tiny_run / part, run / part)
    start = load_config(SFTConfig, tiny_run / "sft" / "config.yaml",
                        {"run": str(run), "max_steps": 6, "eval_steps": 2, "early_stopping_patience": 0,
                         "save_total_limit": 1})
    (run / "sft" / "config.yaml").write_text(yaml.safe_dump(vars(start)), encoding="utf-8")
    space = write(tmp_path / "lr.yaml", "learning_rate: {log_uniform: [1e-3, 1e-1]}\nlora_r: {choice: [2, 4]}\n")
    return run, space


def sweep_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "cli", "sweep", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, env={**os.environ, "TQDM_DISABLE": "1"})


def test_a_ppo_sweep_holds_prompts_out_for_its_objective(tmp_path):
    from sweep.study import starting_config

    (tmp_path / "ppo").mkdir()
    (tmp_path / "ppo" / "config.yaml").write_text("learning_rate: 1.0e-4\nval_prompts: 0\nout: somewhere\n")
    base = starting_config(SweepConfig(run=str(tmp_path)), "ppo")
    assert (base.learning_rate, base.val_prompts, base.out, base.run) == (1e-4, 64, "", str(tmp_path))


def test_bad_space_stops_before_any_trial_with_one_line(sweep_run, tmp_path):
    run, _ = sweep_run
    bad = write(tmp_path / "bad.yaml", "learning_rate: {log_uniform: [1e-3, 1e-1]}\nlora_rank: {choice: [2, 4]}\n")
    out = sweep_cli("sft", "--run", run, "--space", bad, "--trials", 2)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"rlhf sweep: {bad}:2: unknown option 'lora_rank' for SFTConfig "
                                               f"(did you mean 'lora_r' or 'lora_alpha'?)"]
    assert not (run / "sweeps").exists()


def test_sweep_runs_trials_keeps_the_baseline_and_writes_the_best_config(sweep_run):
    from sweep.study import main

    run, space = sweep_run
    summary = main(SweepConfig(run=str(run), space=str(space), trials=3, threads=1, pruner="none"), "sft")
    where = run / "sweeps" / "sft" / "lr"
    trials = json.loads((where / "trials.json").read_text())["trials"]
    assert [t["state"] for t in trials] == ["complete"] * 3
    # trial 0 ran the starting config's own values, and says so
    assert trials[0]["params"] == {"learning_rate": 5e-2, "lora_r": 4}
    assert summary["baseline"]["number"] == 0
    for t in trials:  # each value is what the stage itself wrote, and its config is the trial's
        metrics = json.loads((where / t["dir"] / "metrics.json").read_text())
        assert t["value"] == pytest.approx(metrics["val_loss"])
        cfg = load_config(SFTConfig, where / f"{t['dir']}.yaml")
        assert (cfg.learning_rate, cfg.lora_r, cfg.out, cfg.threads) == \
            (pytest.approx(t["params"]["learning_rate"]), t["params"]["lora_r"], str(where / t["dir"]), 1)
        assert (where / t["dir"] / "adapter_model.safetensors").exists()
        assert [s for s, _ in t["curve"]] == [2, 4, 6]
    assert len({t["value"] for t in trials}) == 3  # different values, different losses
    best = min(trials, key=lambda t: t["value"])
    assert summary["best"]["number"] == best["number"]
    cfg = load_config(SFTConfig, where / "best.yaml")  # usable as the stage's --config
    assert (cfg.learning_rate, cfg.lora_r, cfg.out, cfg.max_steps) == \
        (pytest.approx(best["params"]["learning_rate"]), best["params"]["lora_r"], "", 6)
    assert (where / "best.yaml").read_text().startswith(f"# rlhf sweep: the best of 3 trials on val_loss (minimize): "
                                                        f"trial {best['number']}")

    # a second call continues the same study: one more trial, the first three untouched
    stamp = (where / "trial-000" / "metrics.json").stat().st_mtime
    main(SweepConfig(run=str(run), space=str(space), trials=4, threads=1, pruner="none"), "sft")
    again = json.loads((where / "trials.json").read_text())["trials"]
    assert [t["number"] for t in again] == [0, 1, 2, 3] and again[:3] == trials
    assert (where / "trial-000" / "metrics.json").stat().st_mtime == stamp
    # another space under the same name would mix trials that do not compare: refused
    other = write(run.parent / "other.yaml", "learning_rate: {log_uniform: [1e-3, 1e-1]}\n")
    with pytest.raises(UserError, match=r"study 'sft/lr' was made with metric val_loss over learning_rate: "
                                        r"log_uniform 0.001..0.1, lora_r: one of 2, 4; give another --name"):
        main(SweepConfig(run=str(run), space=str(other), name="lr", trials=5, threads=1), "sft")


class _PruneAtOnce:
    """Stands in for an optuna.Trial whose pruner stops it at its first held-out value."""
    number = 7

    def __init__(self):
        self.reports = []

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return True


def test_a_pruned_trial_stops_its_process_at_the_first_held_out_value(sweep_run, tmp_path):
    import optuna

    from sweep.objective import METRICS
    from sweep.trial import run_trial, trial_config

    run, _ = sweep_run
    base = load_config(SFTConfig, run / "sft" / "config.yaml", {"max_steps": 400})
    cfg = trial_config(base, {}, tmp_path / "trial-007", threads=1, quick=False)
    procs = []
    trial = _PruneAtOnce()
    with pytest.raises(optuna.TrialPruned, match="val_loss .* at step 2"):
        run_trial(trial, "sft", cfg, METRICS["sft"]["val_loss"], started=procs.append)
    assert [s for s, _ in trial.reports] == [2]
    assert procs[0].poll() is not None  # the stage's process is gone
    assert not (tmp_path / "trial-007" / "metrics.json").exists()
    steps = [json.loads(line)["step"] for line in (tmp_path / "trial-007" / "log.jsonl").read_text().splitlines()]
    assert max(steps) < 400


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_share_one_study_without_running_a_trial_twice(sweep_run, tmp_path, backend):
    run, space = sweep_run
    if backend == "postgresql":
        if not os.environ.get("RLHF_TEST_PG_URL"):
            pytest.skip("RLHF_TEST_PG_URL is not set (.ci/run starts PostgreSQL and sets it)")
        storage = os.environ["RLHF_TEST_PG_URL"]
    else:
        storage = f"sqlite:///{tmp_path / 'shared.db'}"
    name = f"shared-{backend}-{uuid.uuid4().hex[:8]}"  # a PostgreSQL database outlives the test
    args = ["sft", "--run", run, "--space", space, "--trials", 5, "--threads", 1, "--storage", storage,
            "--name", name, "--pruner", "none"]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    workers = [subprocess.Popen([sys.executable, "-m", "cli", "sweep", *map(str, args)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    ran = [{int(n) for n in re.findall(r"^\[sweep\] trial (\d+): val_loss", out, re.M)} for out in outputs]
    assert ran[0] and ran[1], outputs  # both worked
    assert not ran[0] & ran[1]  # never the same trial
    # together they ran the study's trials (a worker that looked as the other asked may add one)
    assert 5 <= len(ran[0] | ran[1]) <= 6 and ran[0] | ran[1] == set(range(len(ran[0] | ran[1])))
    where = run / "sweeps" / "sft" / name
    assert sorted(p.name for p in where.glob("trial-*.console.log")) == \
        [f"trial-{n:03d}.console.log" for n in sorted(ran[0] | ran[1])]
    import optuna

    study = optuna.load_study(study_name=f"sft/{name}", storage=storage)
    values = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(values)) == len(values)  # no two trials with the same values, one baseline
    assert sum(dict(v) == {"learning_rate": 5e-2, "lora_r": 4} for v in values) == 1


def test_ctrl_c_stops_the_trial_keeps_the_study_and_the_same_command_continues(sweep_run, tmp_path):
    import signal

    import optuna

    run, space = sweep_run
    long = tmp_path / "long.yaml"
    start = load_config(SFTConfig, run / "sft" / "config.yaml", {"max_steps": 2000, "eval_steps": 2})
    long.write_text(yaml.safe_dump(vars(start)), encoding="utf-8")
    args = ["sft", "--run", run, "--space", space, "--trials", 2, "--threads", 1, "--name", "cut"]
    # SIGINT as a terminal gives it, even when this test runs in a background job (which ignores it)
    proc = subprocess.Popen([sys.executable, "-m", "cli", "sweep", *map(str, args), "--stage_config", long], cwd=ROOT,
                            env={**os.environ, "TQDM_DISABLE": "1", "PYTHONFAULTHANDLER": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    log = run / "sweeps" / "sft" / "cut" / "trial-000" / "log.jsonl"
    deadline = time.time() + 120
    while not evaluations(log, "eval_loss") and time.time() < deadline:
        time.sleep(0.5)
    assert evaluations(log, "eval_loss"), "the first trial never reached its first evaluation"
    proc.send_signal(signal.SIGINT)
    try:
        out = proc.communicate(timeout=120)[0]
    except subprocess.TimeoutExpired:  # every thread's stack (faulthandler) to say where it hangs
        proc.send_signal(signal.SIGABRT)
        pytest.fail("the sweep did not end after Ctrl-C:\n" + proc.communicate(timeout=30)[0][-6000:])
    assert proc.returncode == 130, out
    assert "[sweep] interrupted: the finished trials are kept in the study; the same command continues it" in out
    size = log.stat().st_size
    time.sleep(3)
    assert log.stat().st_size == size  # the trial's process is gone, not training on in the background
    study = optuna.load_study(study_name="sft/cut", storage=f"sqlite:///{run / 'sweeps' / 'sft' / 'cut' / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["FAIL"]

    again = sweep_cli(*args)  # the same command, the run's own 6-step config: two trials to finish
    assert again.returncode == 0, again.stdout + again.stderr
    assert "continuing the study, which holds 1 trial(s)" in again.stdout
    study = optuna.load_study(study_name="sft/cut", storage=f"sqlite:///{run / 'sweeps' / 'sft' / 'cut' / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE", "COMPLETE"]


def test_the_pruner_waits_for_the_second_held_out_value_of_the_trials_as_they_run():
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from sweep.study import make_pruner

    def stops_at(pruner, every: int) -> int | None:
        """The step at which a trial far behind two finished ones is stopped (None: never)."""
        study = optuna.create_study(pruner=pruner)
        for _ in range(2):
            study.add_trial(create_trial(params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)}, value=0.4,
                                         state=TrialState.COMPLETE,
                                         intermediate_values={every * k: 0.5 for k in range(1, 5)}))
        trial = study.ask()
        for k in range(1, 5):
            trial.report(0.9, every * k)
            if trial.should_prune():
                return every * k
        return None

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = load_config(DPOConfig, None, {"max_steps": 80, "eval_steps": 10})
    assert stops_at(make_pruner("median", base, trials=8), every=10) == 20  # not at its first value
    # --quick: evaluations every 5 steps, and the pruner counts in those
    assert stops_at(make_pruner("median", halve_steps(base), trials=8), every=5) == 10
    assert stops_at(make_pruner("none", base, trials=8), every=10) is None
    assert isinstance(make_pruner("hyperband", base, 8), optuna.pruners.HyperbandPruner)


def test_a_worker_that_loses_the_race_to_create_the_tables_tries_again(monkeypatch):
    """PostgreSQL: the second of two workers creating Optuna's tables fails with DuplicateTable (a
    ProgrammingError); its next try opens the tables the first one made."""
    import optuna
    from sqlalchemy.exc import ProgrammingError

    from sweep.study import connect

    tries = []

    def storage(url, **kw):
        tries.append(url)
        if len(tries) == 1:
            raise ProgrammingError("CREATE TABLE studies", {}, Exception('relation "studies" already exists'))
        return "opened"

    monkeypatch.setattr(optuna.storages, "RDBStorage", storage)
    assert connect("postgresql+psycopg://u@127.0.0.1/db") == "opened" and len(tries) == 2
