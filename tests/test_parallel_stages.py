"""Stages side by side (loop/parallel.py): which stages of the real plans are grouped, and a group's
stages running at once in their own processes, with their share of the threads, their output, their
fingerprints marked done, and a failure raised in the parent after the others finished."""
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
from loop.parallel import groups, log_path, resolve_jobs, run_group
from loop.runner import Stage, run_stage


def _names(gs):
    return [[s.name for s in g] for g in gs]


def test_demo_plan_groups_reward_with_dpo_and_ppo_with_rloo(tmp_path):
    from core.config import load_config
    from demo.config import DemoConfig
    from demo.pipeline import plan

    cfg = load_config(DemoConfig, None, {"run": str(tmp_path / "run"), "quick": True, "rounds": 2})
    stages = plan(cfg)
    round1 = [["data"], ["base"], ["sft"], ["collect"], ["reward", "dpo"], ["ppo", "rloo"], ["eval"]]
    round2 = [["collect@2"], ["reward@2", "dpo@2"], ["ppo@2", "rloo@2"], ["eval@2"]]
    assert _names(groups(stages, 2)) == round1 + round2
    assert _names(groups(stages, 3)) == round1 + round2  # PPO reads the reward model: never beside it
    assert _names(groups(stages, 1)) == [[s.name] for s in stages]
    assert _names(groups(stages, 2, until="dpo")) == round1[:5]
    assert _names(groups(stages, 2, until="reward")) == round1[:4] + [["reward"]]


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


def _stage(tmp, tag, fn):
    return Stage(tag, tmp / tag, fn, FakeConfig(run=str(tmp), tag=tag), {"data": tmp / "data.txt"})


def test_a_group_runs_side_by_side_and_is_then_up_to_date(tmp_path, capsys):
    (tmp_path / "data.txt").write_text("rows")
    group = [_stage(tmp_path, "a", _meet), _stage(tmp_path, "b", _meet)]
    import torch

    torch.set_num_threads(2)
    torch.ones(512, 512) @ torch.ones(512, 512)  # the parent has used its OpenMP threads: children must not hang
    seconds = run_group(group, "test")
    assert all(s is not None and s >= 0 for s in seconds.values())
    pids, threads = zip(*((tmp_path / f"{t}.here").read_text().split() for t in "ab"))
    assert len(set(pids)) == 2 and str(os.getpid()) not in pids  # two processes, neither the parent
    assert threads == ("1", "1")  # one thread each (core/forked.py)
    out = capsys.readouterr().out
    assert "a ‖ b: side by side, one thread each" in out
    assert "[a] met the other stage" in out and "[b] met the other stage" in out  # their output, relayed
    assert "a: done in" in out and "b: done in" in out
    assert "met the other stage" in log_path(group[0]).read_text()
    # both marked done under their fingerprints: a serial re-run skips them
    assert run_stage(group[0], "test") is None and run_stage(group[1], "test") is None
    assert run_group(group, "test") == {"a": None, "b": None}


def test_a_failing_stage_is_raised_after_the_other_finishes(tmp_path, capsys):
    (tmp_path / "data.txt").write_text("rows")
    slow = _stage(tmp_path, "a", _meet)
    bad = _stage(tmp_path, "b", _fail)
    (tmp_path / "b.here").write_text("so that a does not wait")
    with pytest.raises(UserError, match=r"b\.yaml:3: learning_rate must be positive"):
        run_group([slow, bad], "test")
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
        run_group([_stage(tmp_path, "a", _meet), dead], "test")


def test_a_group_with_one_stage_to_run_runs_it_here(tmp_path):
    (tmp_path / "data.txt").write_text("rows")
    group = [_stage(tmp_path, "a", _meet), _stage(tmp_path, "b", _meet)]
    run_group(group, "test")
    (tmp_path / "b" / "inputs.json").unlink()  # b must run again, a is up to date
    seconds = run_group(group, "test")
    assert seconds["a"] is None and seconds["b"] is not None
    pid, threads = (tmp_path / "b.here").read_text().split()
    assert pid == str(os.getpid()) and threads == "0"  # here, with its own thread setting
