"""core/checkpoints.py: the one checkpoint/resume helper of the reward and PPO loops (and the
listing/log handling of the Trainer-based stages)."""
import json
import random

import pytest
import torch

from core import checkpoints


def _log(path, steps):
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in steps))


def test_listing_orders_by_step_not_by_name(tmp_path):
    for name in ("step-9.pt", "step-000010.pt", "step-2.pt", "best.pt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in checkpoints.list_checkpoints(tmp_path)] == ["step-2.pt", "step-9.pt", "step-000010.pt"]
    for step in (5, 40, 100):
        (tmp_path / f"checkpoint-{step}").mkdir()
    assert [checkpoints.step_of(p) for p in checkpoints.list_checkpoints(tmp_path, checkpoints.TRAINER)] == [5, 40, 100]
    checkpoints.prune(tmp_path, 1, checkpoints.TRAINER)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-100"]


def test_save_is_atomic_and_keeps_the_newest(tmp_path):
    for step in (1, 2, 3):
        checkpoints.save(tmp_path, step, {"w": torch.tensor([float(step)])}, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000002.pt", "step-000003.pt"]  # no .tmp left
    state = checkpoints.load(tmp_path / "step-000003.pt")
    assert state["step"] == 3 and state["w"].item() == 3.0


def test_rng_state_round_trip_repeats_the_draws():
    torch.manual_seed(0)
    random.seed(0)
    saved = checkpoints.rng_state()
    first = (random.random(), torch.rand(3).tolist())
    checkpoints.set_rng_state(saved)
    assert (random.random(), torch.rand(3).tolist()) == first


def test_resume_cuts_the_log_and_a_fresh_start_clears(tmp_path, capsys):
    out = tmp_path / "stage"
    for step in (2, 4):
        checkpoints.save(out / "checkpoints", step, {}, keep=5)
    _log(out / "log.jsonl", [1, 2, 3, 4, 5, 6])
    found = checkpoints.start_or_resume(out, True, "x")
    assert found.name == "step-000004.pt"
    assert [r["step"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())] == [1, 2, 3, 4]
    assert "[x] resuming from" in capsys.readouterr().out

    (out / "checkpoints" / "best.pt").write_bytes(b"x")
    assert checkpoints.start_or_resume(out, False, "x") is None
    assert not (out / "log.jsonl").exists() and not (out / "checkpoints").exists()
    assert checkpoints.start_or_resume(out, True, "x") is None
    assert "no checkpoint" in capsys.readouterr().out


def test_trainer_path_keeps_its_checkpoints_on_a_fresh_start(tmp_path):
    from core.training import prepare_resume

    (tmp_path / "checkpoints" / "checkpoint-3").mkdir(parents=True)
    _log(tmp_path / "log.jsonl", [1, 2, 3, 4])
    assert prepare_resume(tmp_path, True, "sft").name == "checkpoint-3"
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 3
    assert prepare_resume(tmp_path, False, "sft") is None
    assert not (tmp_path / "log.jsonl").exists() and (tmp_path / "checkpoints" / "checkpoint-3").exists()


def test_step_needs_a_number():
    with pytest.raises(ValueError, match="no step number"):
        checkpoints.step_of("best.pt")
