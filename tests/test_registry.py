"""core/registry.py: an RL algorithm is its own module plus one registry entry. A fake algorithm
registered here (and nowhere else) reaches the CLI, policy discovery, the eval's comparisons, the
report's curves and the demo loop's plan."""
import dataclasses
import json
from dataclasses import dataclass

import pytest

from core import registry
from core.config import F, RuntimeConfig


@dataclass
class FakeConfig(RuntimeConfig):
    model: str = F("", "base model directory")
    data: str = F("", "preference pairs")
    resume: bool = F(False, "resume from a checkpoint")
    beta: float = F(0.5, "the fake algorithm's only knob")


def fake_main(cfg: FakeConfig) -> dict:
    return {"beta": cfg.beta}


FAKE = registry.Algorithm("fake", "test_registry:FakeConfig", "test_registry:fake_main", "Fake update of the SFT "
                          "policy", "Fake-PO", "tab:purple",
                          {"sft": registry.SFT_ADAPTER, "preferences": "collect/preferences.jsonl"},
                          (("fake loss", ("fake_loss",)),), {"beta": 0.125})


@pytest.fixture
def with_fake(monkeypatch):
    monkeypatch.setattr(registry, "ALGORITHMS", [*registry.ALGORITHMS, FAKE])


def test_the_shipped_algorithms():
    assert registry.names() == ("dpo", "ppo", "rloo")
    for alg in registry.ALGORITHMS:
        cls = alg.config_class()
        names = {f.name for f in dataclasses.fields(cls)}
        assert {"run", "seed", "resume"} <= names, alg.name
        assert callable(alg.main_fn()) and alg.main_fn().__module__ == f"rl.{alg.name}"
        assert all(not v.startswith("/") for v in alg.inputs.values()) and alg.curves
    assert registry.get("ppo").inputs["reward"] == "reward/metrics.json" and registry.get("sft") is None


def test_cli_lists_and_runs_a_registered_algorithm(with_fake, capsys):
    from cli.main import config_classes, main

    assert main(["--help"]) == 0
    assert "  fake       Fake update of the SFT policy" in capsys.readouterr().out
    assert main(["fake", "--help"]) == 0
    assert "--beta" in capsys.readouterr().out
    assert main(["fake", "--beta", "0.25"]) == 0
    assert config_classes()["fake"] is FakeConfig


def test_eval_and_policies_read_the_registry(with_fake, tmp_path):
    from core.policies import adapter_dir, discover
    from eval.stage import comparisons

    assert comparisons() == [("dpo", "sft"), ("ppo", "sft"), ("rloo", "sft"), ("fake", "sft"), ("sft", "base"),
                             ("ppo", "dpo"), ("rloo", "dpo"), ("fake", "dpo"), ("rloo", "ppo"), ("fake", "ppo"),
                             ("fake", "rloo")]
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text("{}")
    for stage in ("sft", "fake"):
        (tmp_path / stage).mkdir()
        (tmp_path / stage / "adapter_config.json").write_text("{}")
    assert list(discover(tmp_path)) == ["base", "sft", "fake"]
    assert adapter_dir(tmp_path, "fake") == tmp_path / "fake"


def test_report_draws_the_registered_curves(with_fake, tmp_path):
    from eval import plots
    from eval.report import training_curves

    assert plots.curves_of("fake") == [("fake loss", ["fake_loss"])] and plots.policy_color("fake") == "tab:purple"
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "log.jsonl").write_text("".join(json.dumps({"step": s, "fake_loss": 1 / s}) + "\n"
                                                         for s in range(1, 6)))
    html = training_curves(tmp_path)
    assert "<h3>Fake-PO</h3><img src=\"data:image/png;base64," in html


def test_the_demo_loop_plans_a_registered_algorithm(with_fake, tmp_path):
    from demo.config import DemoConfig
    from demo.pipeline import plan as demo_plan

    plan = {s.name: s for s in demo_plan(DemoConfig(run=str(tmp_path)))}
    assert list(plan)[-4:] == ["ppo", "rloo", "fake", "eval"]
    assert plan["fake"].inputs == {"sft": tmp_path / "sft" / "adapter_model.safetensors",
                                   "preferences": tmp_path / "collect" / "preferences.jsonl"}
    assert plan["fake"].fn(plan["fake"].cfg) == {"beta": 0.5}  # its own default: demo/sizes.py has none for it
    assert plan["eval"].inputs["fake"] == tmp_path / "fake" / "adapter_model.safetensors"


def test_rlhf_loop_plans_a_registered_algorithm(with_fake, tmp_path):
    from loop.config import LoopConfig
    from loop.run import plan, stage_configs

    prefs = tmp_path / "prefs.jsonl"
    cfg = LoopConfig(run=str(tmp_path / "run"), model=str(tmp_path / "m"), sft="sft.jsonl", prompts="p.jsonl",
                     preferences=str(prefs), quick=True, stages={"fake": {"beta": 0.25}})
    configs = stage_configs(cfg)
    assert isinstance(configs["fake"], FakeConfig)
    assert (configs["fake"].model, configs["fake"].data, configs["fake"].beta) == (cfg.model, str(prefs), 0.25)
    assert stage_configs(LoopConfig(**{**vars(cfg), "stages": {}}))["fake"].beta == 0.125  # its --quick size
    stages = {s.name: s for s in plan(cfg, configs)}
    assert list(stages)[-4:] == ["ppo", "rloo", "fake", "eval"]
    assert stages["fake"].inputs["preferences"] == prefs and stages["fake"].fn(configs["fake"]) == {"beta": 0.25}
    assert stages["eval"].inputs["fake"] == tmp_path / "run" / "fake" / "adapter_model.safetensors"


def test_launch_modes_come_from_the_entry(with_fake):
    from core.config import UserError
    from core.training import check_launch

    check_launch("fake", {})
    with pytest.raises(UserError, match="fake runs in one process, not DDP"):
        check_launch("fake", {"WORLD_SIZE": "2"})
    check_launch("ppo", {"WORLD_SIZE": "2"})
