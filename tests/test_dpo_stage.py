"""DPO on the tiny run for a few steps: the policy adapter moves, the base and the reference do not,
the reference is the SFT policy, ε per pair reaches the loss, every loss type runs, resume is exact."""
import json

import pytest
import torch

from core.config import UserError, load_config
from rl.dpo import DPOConfig

WRONG = {"Sunday": "On Sunday we are open 9am to 6pm.", "other": "We are closed on Sundays."}


@pytest.fixture
def prefs(tmp_path):
    """chosen = the fixture's correct answer, rejected = a wrong one; 3 of 5 votes or 5 of 5."""
    from conftest import tiny_chat_rows

    rows = []
    for i, r in enumerate(tiny_chat_rows()):
        wrong = WRONG["Sunday" if "Sunday" in r["prompt"] else "other"]
        rows.append({"prompt": r["prompt"], "chosen": r["completion"], "rejected": wrong,
                     "agreement": 0.6 if i % 2 else 1.0, "n_votes": 5, "item_id": f"i{i}"})
    f = tmp_path / "preferences.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


def _cfg(run, prefs, out, **kw):
    base = dict(run=str(run), data=str(prefs), out=str(out), max_steps=4, eval_steps=2, logging_steps=1,
                batch_size=4, learning_rate=5e-3, warmup_ratio=0.0, val_fraction=0.15, save_total_limit=5, beta=0.3,
                early_stopping_patience=0, max_kl=0.0, threads=1, dtype="float32")
    base.update(kw)  # float32: the reference log-probs are checked against the SFT policy's to 1e-4
    return load_config(DPOConfig, None, base)


def _losses(out):
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    return [(r["step"], round(r["loss"], 5)) for r in rows if "loss" in r]


def _sft_policy(run, tok):
    from core.device import resolve_device
    from core.models import load_policy

    return load_policy(run / "base", resolve_device("cpu", apply=False), tok, adapter=run / "sft").eval()


def _seq_logps(model, batch):
    """(2B,) summed completion log-probs with plain logits (no TRL code on this path)."""
    from core.logps import sequence_logps

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (2B, T, V)
    return sequence_logps(logits[:, :-1], batch["input_ids"][:, 1:], batch["completion_mask"][:, 1:])


def test_dpo_moves_policy_only_and_reference_is_sft(tiny_run, prefs, tmp_path):
    from safetensors.torch import load_file

    from rl.dpo import build_trainer
    from rl.dpo_loss import dpo_loss, smoothing_from_agreement

    trainer, info = build_trainer(_cfg(tiny_run, prefs, tmp_path / "dpo", max_steps=3))
    model = trainer.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    sft_file = load_file(str(tiny_run / "sft" / "adapter_model.safetensors"))
    ref_params = {n: p for n, p in model.named_parameters() if ".ref." in n}
    assert ref_params and all(torch.equal(p, sft_file[n.replace(".ref.", ".")]) for n, p in ref_params.items())

    trainer.train()

    after = dict(model.named_parameters())
    policy = [n for n in after if ".default." in n]
    assert policy and any(not torch.equal(before[n], after[n]) for n in policy)
    frozen = [n for n in after if ".default." not in n]  # base weights and the "ref" adapter
    assert all(torch.equal(before[n], after[n]) for n in frozen)

    # TRL's reference forward (the "ref" adapter) gives the SFT policy's log-probs
    model.eval()
    rows = [trainer.train_dataset[i] for i in range(4)]
    batch = trainer.data_collator(rows)
    sft = _sft_policy(tiny_run, info["tokenizer"])
    with torch.no_grad():
        ref_chosen, ref_rejected = trainer.compute_ref_log_probs(model, batch)
        sft_logps = _seq_logps(sft, batch)
        policy_logps = _seq_logps(model, batch)
    torch.testing.assert_close(torch.cat([ref_chosen, ref_rejected]), sft_logps, rtol=1e-5, atol=1e-4)
    assert not torch.allclose(policy_logps, sft_logps, atol=1e-3)

    # ε from the votes is in the batch, and the trainer's loss is dpo_loss with that ε, per pair
    train_rows = info["train_rows"][:4]
    eps = smoothing_from_agreement(torch.tensor([r["agreement"] for r in train_rows]),
                                   torch.tensor([r["n_votes"] for r in train_rows]))
    assert len(set(eps.tolist())) == 2  # both 3/5 and 5/5 pairs in this batch
    torch.testing.assert_close(batch["label_smoothing"], eps)
    pc, pr = policy_logps.chunk(2)
    rc, rr = sft_logps.chunk(2)
    unanimous = smoothing_from_agreement(torch.ones(4), torch.full((4,), 5))
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch))
        loss_unanimous = trainer.compute_loss(model, {**batch, "label_smoothing": unanimous})
    expected = dpo_loss(pc, pr, rc, rr, beta=0.3, label_smoothing=eps)[0].mean()
    expected_unanimous = dpo_loss(pc, pr, rc, rr, beta=0.3, label_smoothing=unanimous)[0].mean()
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(loss_unanimous, expected_unanimous, rtol=1e-4, atol=1e-5)
    assert abs((loss - loss_unanimous).item()) > 1e-4


def test_nll_coef_adds_the_chosen_answers_nll_to_the_trainers_loss(tiny_run, prefs, tmp_path):
    from rl.dpo import build_trainer

    trainer, info = build_trainer(_cfg(tiny_run, prefs, tmp_path / "dpo", nll_coef=0.5))
    model = trainer.model.eval()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    with torch.no_grad():
        with_nll = trainer.compute_loss(model, dict(batch))
        trainer.nll_coef = 0.0
        plain = trainer.compute_loss(model, dict(batch))
        chosen = _seq_logps(model, batch).chunk(2)[0]  # (4,) summed log-probs of the chosen answers
    n_chosen = batch["completion_mask"][:, 1:].sum(dim=1).chunk(2)[0]
    torch.testing.assert_close(with_nll - plain, 0.5 * (-chosen / n_chosen).mean(), rtol=1e-4, atol=1e-5)


def test_dpo_stage_writes_run_dir_and_adapter_reloads(tiny_run, prefs, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file

    from core.device import resolve_device
    from core.models import load_causal_lm, load_tokenizer
    from rl.dpo import main

    out = tmp_path / "dpo"
    metrics = main(_cfg(tiny_run, prefs, out, max_kl=100.0))  # a limit that never trips: keep the best
    assert metrics["steps"] == 4
    for f in ("adapter_config.json", "adapter_model.safetensors", "config.yaml", "metrics.json", "log.jsonl",
              "README.md", "train.jsonl", "val.jsonl", "tokenizer.json"):
        assert (out / f).exists(), f
    assert not (out / "ref").exists()  # only the trained adapter is saved
    assert 0 < metrics["ref_adapter_bytes"] == metrics["policy_adapter_bytes"] < metrics["base_param_bytes"]
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "sha256" in card and "val_accuracy" in card
    from core.runcard import read_card_header

    header = read_card_header(out)  # the preference file only: no splits, no SFT adapter file
    assert header["library_name"] == "peft" and header["base_model"] == str((tiny_run / "base").resolve())
    assert header["datasets"] == [str(prefs.resolve())]
    assert {"rlhf-loop", "trl", "dpo", "lora"} <= set(header["tags"])
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        str((tiny_run / "base").resolve())

    logs = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "kl"):
        assert any(key in r for r in logs), key
        assert any(f"eval_{key}" in r for r in logs), f"eval_{key}"
    train_prompts = {json.loads(x)["prompt"] for x in (out / "train.jsonl").read_text().splitlines()}
    val_prompts = {json.loads(x)["prompt"] for x in (out / "val.jsonl").read_text().splitlines()}
    assert val_prompts and not train_prompts & val_prompts

    tok = load_tokenizer(tiny_run / "base")
    base = load_causal_lm(tiny_run / "base", resolve_device("cpu", apply=False), tok)
    dpo = PeftModel.from_pretrained(base, str(out)).eval()
    saved = load_file(str(out / "adapter_model.safetensors"))
    sft = load_file(str(tiny_run / "sft" / "adapter_model.safetensors"))
    assert saved.keys() == sft.keys() and any(not torch.equal(saved[k], sft[k]) for k in saved)
    loaded = {n.replace(".default.", "."): p for n, p in dpo.named_parameters() if "lora_" in n}
    assert all(torch.equal(loaded[k], v) for k, v in saved.items())

    # the saved adapter is the checkpoint with the lowest held-out loss
    eval_rows = [r for r in logs if "eval_loss" in r]
    evals = {r["step"]: r["eval_loss"] for r in eval_rows[:-1]}  # the last row is main()'s final evaluation
    assert sorted(evals) == [2, 4]
    best_step = min(evals, key=evals.get)
    assert metrics["best_checkpoint"].endswith(f"checkpoint-{best_step}")
    best = load_file(str(out / "checkpoints" / f"checkpoint-{best_step}" / "adapter_model.safetensors"))
    assert all(torch.equal(best[k], saved[k]) for k in saved)
    assert metrics["val_loss"] == pytest.approx(evals[best_step], abs=1e-6)


@pytest.mark.parametrize("loss_type,smoothing,precompute", [("ipo", 0.0, False), ("robust", "agreement", True)])
def test_loss_types_run(tiny_run, prefs, tmp_path, loss_type, smoothing, precompute):
    from rl.dpo import main

    out = tmp_path / "dpo"
    metrics = main(_cfg(tiny_run, prefs, out, loss_type=loss_type, label_smoothing=smoothing, max_steps=2,
                        precompute_ref_log_probs=precompute))
    assert metrics["steps"] == 2 and all(l == l for _, l in _losses(out))  # finite, not NaN
    assert _losses(out)[0][1] == pytest.approx(0.25 / 0.3**2 if loss_type == "ipo" else 0.693147, rel=1e-4)


def test_precomputed_reference_gives_the_same_losses(tiny_run, prefs, tmp_path):
    from rl.dpo import main

    live, pre = tmp_path / "live", tmp_path / "pre"
    main(_cfg(tiny_run, prefs, live, max_steps=3, eval_steps=3))
    main(_cfg(tiny_run, prefs, pre, max_steps=3, eval_steps=3, precompute_ref_log_probs=True))
    assert [round(x, 4) for _, x in _losses(live)] == [round(x, 4) for _, x in _losses(pre)]


def test_ipo_with_agreement_smoothing_is_a_user_error(tiny_run, prefs, tmp_path):
    from rl.dpo import main

    with pytest.raises(UserError, match="ipo"):
        main(_cfg(tiny_run, prefs, tmp_path / "dpo", loss_type="ipo"))


class _Interrupt(Exception):
    pass


def test_resume_reproduces_uninterrupted_losses(tiny_run, prefs, tmp_path):
    from transformers import TrainerCallback

    from rl.dpo import main

    full = tmp_path / "full"
    main(_cfg(tiny_run, prefs, full, max_steps=6))

    class StopAt5(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 5:  # crash after checkpoint-4 was saved, mid-way to the next
                raise _Interrupt()

    part = tmp_path / "part"
    with pytest.raises(_Interrupt):
        main(_cfg(tiny_run, prefs, part, max_steps=6), callbacks=[StopAt5()])
    assert (part / "checkpoints" / "checkpoint-4").exists()
    main(_cfg(tiny_run, prefs, part, max_steps=6, resume=True))
    assert _losses(part) == _losses(full)
    assert [s for s, _ in _losses(part)] == [1, 2, 3, 4, 5, 6]


def test_kl_guard_stops_training(tiny_run, prefs, tmp_path):
    from rl.dpo import main

    metrics = main(_cfg(tiny_run, prefs, tmp_path / "dpo", max_steps=6, max_kl=1e-9))
    # the first evaluation whose held-out KL estimate is positive trips it (k1 can be negative early)
    logs = [json.loads(x) for x in (tmp_path / "dpo" / "log.jsonl").read_text().splitlines()]
    first = next(r["step"] for r in logs if r.get("eval_kl", 0.0) > 1e-9)
    assert metrics["kl_guard_tripped_at_step"] == first == metrics["steps"] < 6


def test_two_processes_end_with_identical_weights(tiny_run, prefs, tmp_path):
    """accelerate launch --num_processes 2 (gloo on CPU): TRL's DPOTrainer under DDP keeps both
    ranks' adapters equal, and the run trained (the adapter moved away from the SFT one)."""
    from pathlib import Path

    from conftest import launch_two_processes

    root = Path(__file__).resolve().parents[1]
    cfg = dict(run=str(tiny_run), data=str(prefs), out=str(tmp_path / "dpo"), max_steps=2, eval_steps=2,
               logging_steps=1, batch_size=2, learning_rate=5e-3, warmup_ratio=0.0, early_stopping_patience=0,
               max_kl=0.0, threads=1)
    script = tmp_path / "dpo2.py"
    script.write_text(
        "import json, sys\n"
        f"sys.path.insert(0, {str(root)!r})\n"
        "from accelerate import PartialState\nfrom core.config import DPOConfig, load_config\nfrom rl.dpo import main\n"
        f"m = main(load_config(DPOConfig, None, {cfg!r}))\n"
        f"open({str(tmp_path)!r} + f'/rank{{PartialState().process_index}}.json', 'w').write(json.dumps(m))\n")
    launch_two_processes(script, tmp_path)
    m0, m1 = (json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1))
    assert m0["processes"] == 2 and m0["steps"] == 2
    assert m0["weights_sha256"] == m1["weights_sha256"]

    from safetensors.torch import load_file

    trained = load_file(str(tmp_path / "dpo" / "adapter_model.safetensors"))
    sft = load_file(str(tiny_run / "sft" / "adapter_model.safetensors"))
    assert trained.keys() == sft.keys()
    assert any(not torch.equal(trained[k], sft[k]) for k in sft)


def test_agreement_smoothing_only_where_pairs_carry_votes():
    """A plain preference file (no n_votes) trains as plain DPO, ε = 0; a voted pair gets ε from its
    votes: 3 of 5 with one pseudo-vote a side is (2 + 1) / (5 + 2) = 3/7."""
    from core.records import validate_preference
    from rl.dpo import pair_smoothing

    plain = validate_preference({"prompt": "p", "chosen": "a", "rejected": "b"})
    voted = validate_preference({"prompt": "p", "chosen": "a", "rejected": "b", "agreement": 0.6, "n_votes": 5})
    assert plain["n_votes"] is None and voted["n_votes"] == 5
    eps = pair_smoothing([plain, voted, plain], DPOConfig(label_smoothing="agreement", max_eps=0.49,
                                                          smoothing_prior=1.0))
    assert eps[0] == 0.0 and eps[2] == 0.0
    assert eps[1] == pytest.approx(3 / 7)
    assert pair_smoothing([plain], DPOConfig(label_smoothing=0.1)) == [0.1]
