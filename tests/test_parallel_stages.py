"""Stages side by side (loop/parallel.py): which stages of the real plan may run beside which, and
the scheduler running independent stages at once in their own processes, one thread each, with
their output, their fingerprints marked done, a stage started as soon as what it reads is done, and
a failure raised in the parent after the others finished."""
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)

from core.config import UserError
from loop.parallel import independent, log_path, resolve_jobs, run_scheduled
from loop.runner import Stage, run_stage


def test_demo_plan_which_stages_may_run_beside_which(tmp_path):
    from core.config import load_config
    from demo.config import DemoConfig
    from demo.pipeline import plan

    cfg = load_config(DemoConfig, None, {"run": str(tmp_path / "run"), "quick": True, "rounds": 2})
    st = {s.name: s for s in plan(cfg)}
    for k in ("", "@2"):
        assert independent(st["dpo" + k], [st["reward" + k]])
        assert independent(st["ppo" + k], [st["dpo" + k]])
        assert independent(st["rloo" + k], [st["dpo" + k], st["ppo" + k]])
        assert not independent(st["ppo" + k], [st["reward" + k]])
        assert not independent(st["rloo" + k], [st["reward" + k]])
        assert not any(independent(st["eval" + k], [st[n + k]]) for n in ("reward", "dpo", "ppo", "rloo"))
        assert not independent(st["reward" + k], [st["collect" + k]])
    assert not independent(st["sft"], [st["base"]]) and not independent(st["collect"], [st["sft"]])
    assert not independent(st["collect@2"], [st["eval"]])  # round 2 samples round 1's best policy
    # the reward model runs alone: PPO and RLOO wait for it, DPO runs beside them instead
    assert [name for name, s in st.items() if s.alone] == ["reward", "reward@2"]


def test_dpo_with_onpolicy_pairs_waits_for_its_rounds_reward_model(tmp_path):
    from core.config import load_config
    from demo.config import DemoConfig
    from demo.pipeline import plan

    dpo_yaml = tmp_path / "dpo.yaml"
    dpo_yaml.write_text("onpolicy_samples: 4\n")
    cfg = load_config(DemoConfig, None, {"run": str(tmp_path / "run"), "quick": True, "rounds": 2,
                                         "dpo_config": str(dpo_yaml)})
    st = {s.name: s for s in plan(cfg)}
    for k in ("", "@2"):
        assert not independent(st["dpo" + k], [st["reward" + k]])
        assert independent(st["ppo" + k], [st["dpo" + k]])
    assert st["dpo@2"].inputs["reward"] == tmp_path / "run" / "rounds" / "2" / "reward" / "metrics.json"


def test_jobs():
    assert resolve_jobs(3, "cpu") == 3 and resolve_jobs(1, "cpu") == 1
    assert resolve_jobs(2, "cuda") == 1 and resolve_jobs(0, "cuda:1") == 1  # CUDA: one at a time
    assert resolve_jobs(0, "cpu", threads=4) == 2 and resolve_jobs(0, "cpu", threads=1) == 1
    assert resolve_jobs(0, "cpu") == (2 if (os.cpu_count() or 1) >= 2 else 1)


@dataclass
class FakeConfig:
    run: str = ""
    tag: str = ""
    threads: int = 0


def _meet(cfg):
    """Write my marker, then wait for my sibling's: only stages running at the same time both finish."""
    me, other = Path(cfg.run) / f"{cfg.tag}.here", Path(cfg.run) / f"{'b' if cfg.tag == 'a' else 'a'}.here"
    me.write_text(f"{os.getpid()} {cfg.threads}")
    deadline = time.time() + 120
    while not other.exists():
        if time.time() > deadline:
            raise RuntimeError(f"{cfg.tag}: the other stage never ran beside me")
        time.sleep(0.05)
    print(f"[{cfg.tag}] met the other stage")
    (Path(cfg.run) / cfg.tag / "metrics.json").write_text("{}")  # a finished stage's last file


def _fail(cfg):
    print(f"[{cfg.tag}] checking")
    raise UserError(f"{cfg.tag}.yaml:3: learning_rate must be positive")


def _stage(tmp, tag, fn, reads=()):
    return Stage(tag, tmp / tag, fn, FakeConfig(run=str(tmp), tag=tag),
                 {"data": tmp / "data.txt", **{r: tmp / r / "metrics.json" for r in reads}})


def _wait_for_c(cfg):
    """b: finish only once c has started, which the scheduler does when a (what c reads) is done."""
    _meet(cfg)
    deadline = time.time() + 120
    while not (Path(cfg.run) / "c.here").exists():
        if time.time() > deadline:
            raise RuntimeError("c never started beside me")
        time.sleep(0.05)


def _c(cfg):
    assert (Path(cfg.run) / "a" / "metrics.json").exists()  # what it reads is there
    (Path(cfg.run) / "c.here").write_text(f"{os.getpid()} {cfg.threads}")
    (Path(cfg.run) / "c").mkdir(exist_ok=True)
    (Path(cfg.run) / "c" / "metrics.json").write_text("{}")


def test_independent_stages_run_side_by_side_and_are_then_up_to_date(tmp_path, capsys):
    (tmp_path / "data.txt").write_text("rows")
    group = [_stage(tmp_path, "a", _meet), _stage(tmp_path, "b", _meet)]
    import torch

    torch.set_num_threads(2)
    torch.ones(512, 512) @ torch.ones(512, 512)  # the parent has used its OpenMP threads: children must not hang
    seconds = run_scheduled(group, "test", jobs=2)
    assert all(s is not None and s >= 0 for s in seconds.values())
    pids, threads = zip(*((tmp_path / f"{t}.here").read_text().split() for t in "ab"))
    assert len(set(pids)) == 2 and str(os.getpid()) not in pids  # two processes, neither the parent
    assert threads == ("1", "1")  # one thread each (core/forked.py)
    out = capsys.readouterr().out
    assert "b: in its own process, one thread, beside a; output in" in out
    assert "[a] met the other stage" in out and "[b] met the other stage" in out  # their output, relayed
    assert "a: done in" in out and "b: done in" in out
    assert "met the other stage" in log_path(group[0]).read_text()
    # both marked done under their fingerprints: a serial re-run skips them
    assert run_stage(group[0], "test") is None and run_stage(group[1], "test") is None
    assert run_scheduled(group, "test", jobs=2) == {"a": None, "b": None}


def test_a_failing_stage_is_raised_after_the_other_finishes(tmp_path, capsys):
    (tmp_path / "data.txt").write_text("rows")
    slow = _stage(tmp_path, "a", _meet)
    bad = _stage(tmp_path, "b", _fail)
    (tmp_path / "b.here").write_text("so that a does not wait")
    with pytest.raises(UserError, match=r"b\.yaml:3: learning_rate must be positive"):
        run_scheduled([slow, bad], "test", jobs=2)
    assert (tmp_path / "a" / "metrics.json").exists()
    assert run_stage(slow, "test") is None  # the stage that worked is kept as done
    out = capsys.readouterr().out
    assert "[b] checking" in out and "a: done in" in out
    assert "Traceback" not in out  # a user's mistake: the one line the command prints, no traceback


def _dies(cfg):
    os._exit(3)  # killed without a word (as the out-of-memory killer would)


def test_a_stage_whose_process_dies_is_reported_with_its_exit_code(tmp_path):
    (tmp_path / "data.txt").write_text("rows")
    (tmp_path / "b.here").write_text("so that a does not wait")
    dead = _stage(tmp_path, "b", _dies)
    with pytest.raises(RuntimeError, match=r"b: the stage's process ended with code 3 \(see .*b\.console\.log\)"):
        run_scheduled([_stage(tmp_path, "a", _meet), dead], "test", jobs=2)


def test_a_stage_starts_as_soon_as_what_it_reads_is_done(tmp_path, capsys):
    """a and b start together; c reads a's output, so it waits for a, then runs beside b (b only
    finishes once c has started); d reads c's output, and nothing follows it: it runs here."""
    (tmp_path / "data.txt").write_text("rows")
    stages = [_stage(tmp_path, "a", _meet), _stage(tmp_path, "b", _wait_for_c), _stage(tmp_path, "c", _c, reads=["a"]),
              _stage(tmp_path, "d", _c_then_here, reads=["c"])]
    seconds = run_scheduled(stages, "test", jobs=2)
    assert set(seconds) == {"a", "b", "c", "d"} and all(v is not None for v in seconds.values())
    assert (tmp_path / "c.here").read_text().split()[1] == "1"  # c ran in a process of its own
    assert (tmp_path / "d.here").read_text().split() == [str(os.getpid()), "0"]  # d here, its threads as set
    out = capsys.readouterr().out
    assert "c: in its own process, one thread, beside b" in out


def _c_then_here(cfg):
    (Path(cfg.run) / "d.here").write_text(f"{os.getpid()} {cfg.threads}")
    (Path(cfg.run) / "d").mkdir(exist_ok=True)
    (Path(cfg.run) / "d" / "metrics.json").write_text("{}")


def test_a_stage_that_the_next_one_reads_runs_here(tmp_path):
    (tmp_path / "data.txt").write_text("rows")
    (tmp_path / "b.here").write_text("so that a does not wait")
    stages = [_stage(tmp_path, "a", _meet), _stage(tmp_path, "d", _c_then_here, reads=["a"])]
    assert set(run_scheduled(stages, "test", jobs=2)) == {"a", "d"}
    assert (tmp_path / "a.here").read_text().split() == [str(os.getpid()), "0"]  # here: d reads a


def test_a_stage_whose_neighbours_are_up_to_date_runs_here(tmp_path):
    """b is independent of a, but up to date: a runs alone, so here, with its threads as set."""
    (tmp_path / "data.txt").write_text("rows")
    (tmp_path / "a.here").write_text("so that b does not wait")
    a, b = _stage(tmp_path, "a", _meet), _stage(tmp_path, "b", _meet)
    run_stage(b, "test")
    (tmp_path / "a.here").unlink()
    assert run_scheduled([a, b], "test", jobs=2)["b"] is None
    assert (tmp_path / "a.here").read_text().split() == [str(os.getpid()), "0"]


def test_a_stage_marked_alone_runs_here_and_the_next_waits_for_it(tmp_path, capsys):
    """a is marked alone: it runs here with its threads as set although b could run beside it;
    b and c (c reads a) then run side by side, each in a process of its own."""
    from dataclasses import replace

    (tmp_path / "data.txt").write_text("rows")
    (tmp_path / "b.here").write_text("so that a does not wait")
    stages = [replace(_stage(tmp_path, "a", _meet), alone=True), _stage(tmp_path, "b", _wait_for_c),
              _stage(tmp_path, "c", _c, reads=["a"])]
    assert set(run_scheduled(stages, "test", jobs=2)) == {"a", "b", "c"}
    assert (tmp_path / "a.here").read_text().split() == [str(os.getpid()), "0"]  # here, not forked
    assert (tmp_path / "c.here").read_text().split()[1] == "1"
    out = capsys.readouterr().out
    assert "a: in its own process" not in out and "c: in its own process, one thread, beside b" in out
