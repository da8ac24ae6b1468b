"""The demo loop at reduced size: every artifact appears, and a re-run skips every stage."""
import json


def test_quick_demo_end_to_end_and_skips_when_up_to_date(tmp_path):
    from core.config import DemoConfig, load_config
    from demo.pipeline import main

    run = tmp_path / "demo"
    cfg = load_config(DemoConfig, None, {"run": str(run), "quick": True})
    first = main(cfg)
    for f in ("data/sft.jsonl", "data/prompts.jsonl", "data/redteam.jsonl", "data/corpus.txt",
              "base/config.json", "base/tokenizer.json", "base/README.md", "base/log.jsonl",
              "sft/adapter_model.safetensors", "sft/README.md", "sft/metrics.json", "sft/log.jsonl",
              "eval/metrics.json", "eval/samples.jsonl"):
        assert (run / f).exists(), f
    assert set(first["eval"]["policies"]) == {"base", "sft"}
    assert "sft_vs_base" in first["eval"]["win_rates"]
    assert all(v > 0 for v in first["timings"].values())

    second = main(cfg)
    assert second["timings"] == {"data": 0.0, "base": 0.0, "sft": 0.0, "eval": 0.0}

    # a changed SFT setting re-runs SFT and everything after it, not the earlier stages
    sft_cfg = tmp_path / "sft.yaml"
    sft_cfg.write_text("max_steps: 4\neval_steps: 4\nbatch_size: 4\n")
    third = main(load_config(DemoConfig, None, {"run": str(run), "quick": True, "sft_config": str(sft_cfg)}))
    assert third["timings"]["data"] == third["timings"]["base"] == 0.0
    assert third["timings"]["sft"] > 0 and third["timings"]["eval"] > 0
    assert json.loads((run / "sft" / "metrics.json").read_text())["steps"] == 4
