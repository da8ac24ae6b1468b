"""PPO on tiny models: what trains and what must not, the loop really optimizes, exact resume,
watchdog rollback; the watchdog and rollout helpers against hand-computed cases."""
import json
import math
import warnings
from pathlib import Path

import pytest
import torch

from core.config import UserError, load_config
from core.config import PPOConfig

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["When do you open on Monday?", "Are you open Sunday?", "How late are you open on Friday?",
           "What time do you close on Tuesday?", "Hi", "Are you open on Saturday? I need a lamp.",
           "When do you open on Thursday?", "What time do you close on Sunday?"]


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    f = tmp_path_factory.mktemp("ppo_data") / "prompts.jsonl"
    rows = [{"id": f"p{i}", "prompt": p, "tags": ["pref"]} for i, p in enumerate(PROMPTS)]
    rows.append({"id": "held", "prompt": "held-out prompt", "tags": ["eval"]})
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


def _cfg(run, out, prompts, **kw):
    base = dict(run=str(run), out=str(out), prompts=str(prompts), max_steps=3, batch_size=4, mini_batch_size=2,
                max_new_tokens=6, ppo_epochs=1, threads=1, save_steps=2, lora_r=4, lora_alpha=8,
                learning_rate=1e-2, value_learning_rate=1e-2)
    base.update(kw)
    return load_config(PPOConfig, None, base)


def word_reward(word):
    return lambda prompts, responses: [float(r.count(word)) for r in responses]


def _device():
    from core.device import resolve_device

    return resolve_device("cpu", threads=1)


def _log(out):
    return [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- the model and a few steps

def test_few_steps_move_policy_and_value_only_and_reference_is_sft(tiny_run, tmp_path):
    from peft import PeftModel

    from core.models import load_causal_lm, load_tokenizer, lora_config
    from core.logps import token_logps
    from rl.pg_loop import make_accelerator
    from rl.ppo import make_optimizer, ppo_update
    from rl.ppo_model import build_actor_critic, memory_report
    from rl.rollout import make_experience

    cfg = _cfg(tiny_run, tmp_path, "unused")
    tok = load_tokenizer(tiny_run / "base")
    ac = build_actor_critic(tiny_run / "base", tiny_run / "sft", tok, _device(), lora_config(cfg))
    before = {n: p.detach().clone() for n, p in ac.named_parameters()}
    acc = make_accelerator(cpu=True)
    model, opt = acc.prepare(ac, make_optimizer(ac, cfg))
    for step in range(3):
        torch.manual_seed(step)
        ppo_update(model, opt, acc, make_experience(ac, tok, PROMPTS[:4], word_reward("day"), cfg, 0.1), cfg)

    changed = {n for n, p in ac.named_parameters() if not torch.equal(p, before[n])}
    assert any(".policy." in n for n in changed) and any(".value." in n for n in changed)
    assert "value_head.weight" in changed
    assert all(".policy." in n or ".value." in n or n.startswith("value_head") for n in changed), \
        "the base weights and the reference adapter must not change"

    # the reference is the SFT policy: its log-probs equal a freshly loaded SFT model's
    torch.manual_seed(7)
    r = make_experience(ac, tok, PROMPTS, word_reward("day"), cfg, 0.1)
    sft = PeftModel.from_pretrained(load_causal_lm(tiny_run / "base", _device(), tok), str(tiny_run / "sft")).eval()
    n = r.response_ids.shape[1]
    with torch.no_grad():
        logits = sft(input_ids=r.input_ids, attention_mask=r.attention_mask, position_ids=r.position_ids).logits
    sft_logps = token_logps(logits[:, -(n + 1):-1], r.response_ids, r.response_mask, cfg.temperature)
    torch.testing.assert_close(r.ref_logps, sft_logps, atol=1e-5, rtol=0)
    assert not torch.allclose(r.logps, r.ref_logps)  # while the policy has moved
    assert (r.kl[r.response_mask == 0] == 0).all() and (r.advantages[r.response_mask == 0] == 0).all()

    mem = memory_report(ac)
    assert mem["ref"] == mem["policy"] and mem["ratio_vs_policy_alone"] < 1.3 * 1.2  # tiny model: LoRA is large


def test_rollout_logps_are_those_of_the_sampling_distribution(tiny_run):
    """Recomputed log-probs (left-padded prompts, positions from the mask, logits / T) equal the
    log-softmax of the logits `generate` sampled from, token for token."""
    from core.generation import encode_prompts
    from core.models import load_tokenizer, lora_config
    from core.logps import token_logps
    from rl.ppo_model import build_actor_critic
    from rl.rollout import sample

    cfg = _cfg(tiny_run, "unused", "unused", temperature=0.7, max_new_tokens=5)
    tok = load_tokenizer(tiny_run / "base")
    ac = build_actor_critic(tiny_run / "base", tiny_run / "sft", tok, _device(), lora_config(cfg))
    torch.manual_seed(3)
    s = sample(ac, tok, PROMPTS, cfg)
    torch.manual_seed(3)
    enc = encode_prompts(tok, PROMPTS, "cpu")
    gen = ac.generate(**enc, do_sample=True, temperature=0.7, top_p=1.0, top_k=0, max_new_tokens=5,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, output_logits=True,
                      return_dict_in_generate=True)
    n = len(gen.logits)
    assert torch.equal(gen.sequences[:, -n:].masked_fill(s["response_mask"][:, :n] == 0, tok.pad_token_id),
                       s["response_ids"][:, :n])
    want = token_logps(torch.stack(gen.logits, 1), s["response_ids"][:, :n], s["response_mask"][:, :n], 0.7)
    with torch.no_grad():
        logits = ac.logits(s["input_ids"], s["attention_mask"], s["position_ids"], s["response_ids"].shape[1])
    got = token_logps(logits, s["response_ids"], s["response_mask"], 0.7)[:, :n]
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_gradient_checkpointing_gives_the_same_update(tiny_run):
    """Checkpointing (train mode, dropout at 0) recomputes the same activations: same weights."""
    from core.device import resolve_device
    from core.models import load_tokenizer, lora_config
    from rl.pg_loop import make_accelerator
    from rl.ppo import make_optimizer, ppo_update
    from rl.ppo_model import build_actor_critic
    from rl.rollout import make_experience

    cfg = _cfg(tiny_run, "unused", "unused")
    tok = load_tokenizer(tiny_run / "base")
    states = []
    for gc in (False, True):
        ac = build_actor_critic(tiny_run / "base", tiny_run / "sft", tok,
                                resolve_device("cpu", threads=1, gradient_checkpointing=gc), lora_config(cfg))
        assert ac.training == gc and ac.lm.is_activation_checkpointing == gc
        acc = make_accelerator(cpu=True)
        model, opt = acc.prepare(ac, make_optimizer(ac, cfg))
        torch.manual_seed(0)
        ppo_update(model, opt, acc, make_experience(ac, tok, PROMPTS[:4], word_reward("day"), cfg, 0.1), cfg)
        states.append(ac.trainable_state())
    for name, t in states[0].items():
        torch.testing.assert_close(states[1][name], t, atol=1e-6, rtol=0)


# ---------------------------------------------------------------- the stage

def test_stage_writes_run_dir_and_policy_adapter_loads(tiny_run, prompts_file, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file

    from core.models import load_causal_lm, load_tokenizer
    from rl.ppo import main

    out = tmp_path / "ppo"
    metrics = main(_cfg(tiny_run, out, prompts_file), reward_fn=word_reward("day"))
    for f in ("adapter_config.json", "adapter_model.safetensors", "value/adapter_model.safetensors",
              "value/value_head.safetensors", "config.yaml", "metrics.json", "log.jsonl", "README.md"):
        assert (out / f).exists(), f
    rows = _log(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    for key in ("kl", "rlhf_reward", "score", "entropy", "approx_kl", "clipfrac", "value_loss",
                "explained_variance", "response_length", "eos_rate", "reward_length_corr", "kl_coef"):
        assert key in rows[-1], key
    assert metrics["steps"] == 3 and not metrics["watchdog"]["tripped"]
    assert "rlhf-loop ppo" in (out / "README.md").read_text()
    from core.runcard import read_card_header

    header = read_card_header(out)
    assert header["library_name"] == "peft" and header["base_model"] == str((tiny_run / "base").resolve())
    assert header["datasets"] == [str(prompts_file.resolve())]  # the SFT adapter is a model, not data
    assert {"rlhf-loop", "ppo", "lora"} <= set(header["tags"]) and "trl" not in header["tags"]

    # eval/gold.py's way of loading a policy: base + the adapter at the top of <run>/ppo
    tok = load_tokenizer(tiny_run / "base")
    trained, sft = load_file(str(out / "adapter_model.safetensors")), load_file(
        str(tiny_run / "sft" / "adapter_model.safetensors"))
    assert trained.keys() == sft.keys() and any(not torch.equal(trained[k], sft[k]) for k in sft)
    policy = PeftModel.from_pretrained(load_causal_lm(tiny_run / "base", _device(), tok), str(out))
    assert policy.active_adapter == "default"


def test_init_starts_the_policy_from_another_adapter_and_the_reference_stays_sft(tiny_run, tmp_path):
    """A later round's PPO and RLOO: the policy from the previous round's adapter (`init`), the
    reference the SFT adapter."""
    import shutil

    from safetensors.torch import load_file, save_file

    from core.models import load_tokenizer, lora_config
    from rl.ppo_model import build_actor_critic

    moved = tmp_path / "previous"
    shutil.copytree(tiny_run / "sft", moved)
    sft = load_file(str(tiny_run / "sft" / "adapter_model.safetensors"))
    save_file({k: v + 0.01 for k, v in sft.items()}, str(moved / "adapter_model.safetensors"))
    tok = load_tokenizer(tiny_run / "base")
    ac = build_actor_critic(tiny_run / "base", tiny_run / "sft", tok, _device(), lora_config(_cfg(tiny_run, tmp_path, "x")),
                            init_path=moved)
    params = dict(ac.named_parameters())
    checked = 0
    for key, value in sft.items():  # "...q_proj.lora_A.weight" -> "...q_proj.lora_A.<adapter>.weight"
        stem, _, leaf = key.rpartition(".")
        policy = next(v for n, v in params.items() if n.endswith(f"{stem}.policy.{leaf}"))
        ref = next(v for n, v in params.items() if n.endswith(f"{stem}.ref.{leaf}"))
        torch.testing.assert_close(policy.detach(), value + 0.01)
        torch.testing.assert_close(ref.detach(), value)
        checked += 1
    assert checked == len(sft) > 0


def test_missing_inputs_are_user_errors(tiny_run, prompts_file, tmp_path):
    from rl.ppo import main

    with pytest.raises(UserError, match="rlhf reward"):
        main(_cfg(tiny_run, tmp_path / "ppo", prompts_file, reward=str(tmp_path / "no_rm")))
    with pytest.raises(UserError, match="rlhf sft"):
        main(_cfg(tiny_run, tmp_path / "ppo", prompts_file, sft=str(tmp_path / "no_sft")), reward_fn=word_reward("a"))
    with pytest.raises(UserError, match="--init .*no LoRA adapter"):
        main(_cfg(tiny_run, tmp_path / "ppo", prompts_file, init=str(tmp_path / "none")), reward_fn=word_reward("a"))
    with pytest.raises(UserError, match="kl_estimator"):
        main(_cfg(tiny_run, tmp_path / "ppo", prompts_file, kl_estimator="k9"), reward_fn=word_reward("a"))


@pytest.fixture(scope="module")
def head_run(tiny_base, tmp_path_factory):
    """tiny_base + an untrained LoRA that also adapts the LM head, as the 'SFT' policy. The tiny
    base is pretrained for 3 steps, so its LM head is near its (small) initialisation and LoRA on
    the attention/MLP layers alone cannot move its near-uniform output far; with the head adapted
    the test measures the PPO loop, not the capacity of a 32-wide model."""
    import shutil

    from peft import get_peft_model

    from core.config import SFTConfig
    from core.models import load_causal_lm, load_tokenizer, lora_config

    run = tmp_path_factory.mktemp("head_run")
    shutil.copytree(tiny_base, run / "base")
    tok = load_tokenizer(run / "base")
    torch.manual_seed(0)
    lora = lora_config(SFTConfig(lora_r=4, lora_alpha=8, lora_dropout=0.0, target_modules="q_proj,v_proj,lm_head"))
    with warnings.catch_warnings():  # tied LM head and embeddings: PEFT warns, and saves both
        warnings.simplefilter("ignore", UserWarning)
        get_peft_model(load_causal_lm(run / "base", _device(), tok), lora).save_pretrained(str(run / "sft"))
    return run


@pytest.mark.filterwarnings("ignore:.*(tie_word_embeddings|save_embedding_layers)")  # the LM-head LoRA, on purpose
def test_ppo_learns_to_emit_the_rewarded_word(head_run, prompts_file, tmp_path):
    from rl.ppo import main

    out = tmp_path / "ppo"
    metrics = main(_cfg(head_run, out, prompts_file, max_steps=20, batch_size=8, mini_batch_size=4, max_new_tokens=8,
                        ppo_epochs=2, temperature=1.0, kl_coef=0.01, adaptive_kl=False, max_kl=0.0,
                        missing_eos_penalty=0.0, save_steps=100), reward_fn=word_reward("day"))
    scores = [r["score"] for r in _log(out)]
    start, end = sum(scores[:4]) / 4, sum(scores[-4:]) / 4
    # an untrained policy says "day" ~0.3 times in 8 tokens; PPO makes it most of the response
    assert end > start + 2.5, scores
    assert metrics["score_end"] > metrics["score_start"]
    assert _log(out)[-1]["kl"] > 1.0  # it got there by moving away from the reference


class _Crash(Exception):
    pass


def test_resume_reproduces_the_uninterrupted_run(tiny_run, prompts_file, tmp_path):
    from rl.ppo import main

    def crashing_reward(after_calls):
        calls = []

        def fn(prompts, responses):
            calls.append(1)
            if len(calls) > after_calls:
                raise _Crash()
            return word_reward("day")(prompts, responses)
        return fn

    kw = dict(max_steps=6, save_steps=2)
    full = main(_cfg(tiny_run, tmp_path / "full", prompts_file, **kw), reward_fn=word_reward("day"))
    with pytest.raises(_Crash):  # dies in the 6th rollout, after the checkpoint of step 4
        main(_cfg(tiny_run, tmp_path / "part", prompts_file, **kw), reward_fn=crashing_reward(5))
    assert [p.name for p in sorted((tmp_path / "part" / "checkpoints").iterdir())] == \
        ["step-000002.pt", "step-000004.pt"]
    resumed = main(_cfg(tiny_run, tmp_path / "part", prompts_file, resume=True, **kw), reward_fn=word_reward("day"))

    def numbers(out):
        return [{k: v for k, v in r.items() if not k.endswith("_s")} for r in _log(out)]
    assert numbers(tmp_path / "part") == numbers(tmp_path / "full")
    assert resumed["weights_sha256"] == full["weights_sha256"]
    assert resumed["score_end"] == full["score_end"]


def test_kl_watchdog_stops_rolls_back_and_says_so(tiny_run, prompts_file, tmp_path, capsys):
    from safetensors.torch import load_file

    from rl.ppo import main

    out = tmp_path / "ppo"
    # k3 is >= 0, and exactly 0 while policy == reference (step 0): any later KL trips the limit
    metrics = main(_cfg(tiny_run, out, prompts_file, max_steps=5, kl_estimator="k3", max_kl=1e-9, save_steps=1),
                   reward_fn=word_reward("day"))
    wd = metrics["watchdog"]
    assert wd["tripped"] and wd["step"] == 1 and wd["rolled_back_to"] == 0 and "KL" in wd["reason"]
    assert metrics["policy_step"] == 0 and len(_log(out)) == 1
    printed = capsys.readouterr().out
    assert "WATCHDOG TRIPPED" in printed and "rolled back" in printed
    assert json.loads((out / "metrics.json").read_text())["watchdog"]["tripped"] is True
    assert "watchdog stopped this run" in (out / "README.md").read_text()
    # what was saved is the last good state: at step 0, the SFT adapter itself
    saved, sft = load_file(str(out / "adapter_model.safetensors")), load_file(
        str(tiny_run / "sft" / "adapter_model.safetensors"))
    assert all(torch.equal(saved[k], sft[k]) for k in sft)


def test_ppo_tiny_yaml_parses():
    cfg = load_config(PPOConfig, ROOT / "configs" / "ppo" / "tiny.yaml")
    assert cfg.max_kl > 0 and cfg.kl_target < cfg.max_kl


def test_two_processes_end_with_identical_weights(tiny_run, prompts_file, tmp_path):
    """accelerate launch --num_processes 2 (gloo on CPU): DDP keeps both ranks' weights equal."""
    from conftest import launch_two_processes

    script = tmp_path / "ppo2.py"
    script.write_text(
        "import json, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from core.config import load_config\nfrom core.config import PPOConfig\nfrom rl.ppo import main\n"
        "from accelerate import PartialState\n"
        f"cfg = load_config(PPOConfig, None, {dict(run=str(tiny_run), out=str(tmp_path / 'ppo'), prompts=str(prompts_file), max_steps=2, batch_size=2, mini_batch_size=1, max_new_tokens=4, ppo_epochs=1, threads=1, lora_r=4, learning_rate=1e-2, value_learning_rate=1e-2)!r})\n"
        "m = main(cfg, reward_fn=lambda p, r: [float(x.count('day')) for x in r])\n"
        f"open({str(tmp_path)!r} + f'/rank{{PartialState().process_index}}.json', 'w').write(json.dumps(m))\n")
    launch_two_processes(script, tmp_path)
    m0, m1 = (json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1))
    assert m0["processes"] == 2 and m0["steps"] == 2
    assert m0["weights_sha256"] == m1["weights_sha256"]
    assert m0["score_end"] == m1["score_end"]  # metrics are gathered: the same on both ranks


# ---------------------------------------------------------------- pure helpers, by hand

def _row(kl=0.1, score=0.0, length=10.0, eos=1.0, corr=0.0):
    return {"kl": kl, "score": score, "response_length": length, "eos_rate": eos, "reward_length_corr": corr}


def test_watchdog_hand_cases():
    from rl.watchdog import Limits, check

    lim = Limits(max_kl=5.0, max_length_ratio=2.0, max_eos_drop=0.3, max_reward_length_corr=0.8, window=2)
    assert check([], _row(kl=4.9), lim) is None
    assert "KL" in check([], _row(kl=5.1), lim)
    assert check([], _row(kl=5.1), Limits(max_kl=0.0)) is None  # 0 = off
    # length: start = mean(10, 10) = 10, recent = mean(20, 22) = 21 > 2 × 10, score 0 → 1 rising
    hist = [_row(length=10), _row(length=10), _row(length=20, score=1)]
    assert "length grew 10.0 → 21.0" in check(hist, _row(length=22, score=1), lim)
    # the same growth with a falling score is not reward hacking
    assert check(hist[:2] + [_row(length=20, score=-1)], _row(length=22, score=-1), lim) is None
    # too few rows to have disjoint start and recent windows (needs 2 × window = 4)
    assert check(hist[:2], _row(length=50, score=1), lim) is None
    # EOS: 1.0 → mean(0.8, 0.5) = 0.65, a drop of 0.35 > 0.3
    hist = [_row(), _row(), _row(eos=0.8, score=1)]
    assert "EOS rate fell 1.00 → 0.65" in check(hist, _row(eos=0.5, score=1), lim)
    assert check(hist, _row(eos=0.7, score=1), lim) is None  # drop 0.25
    # correlation: recent mean(0.9, None) = 0.9 > 0.8 (None = constant batch, skipped)
    hist = [_row(), _row(), _row(corr=0.9, score=1)]
    assert "correlation averaged 0.90" in check(hist, _row(corr=None, score=1), lim)


def test_rollout_helpers_by_hand():
    from rl.pg_inputs import prompt_batch, step_seed
    from rl.ppo_model import position_ids_from_mask
    from rl.rollout import penalize_scores, response_mask, sample_metrics

    eos = 9
    mask, has_eos = response_mask(torch.tensor([[5, 9, 0, 0], [5, 6, 7, 8], [9, 9, 0, 0]]), eos)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]] and has_eos.tolist() == [True, False, True]

    raw, cut = torch.tensor([2.0, 3.0, -5.0]), torch.tensor([True, False, False])
    assert penalize_scores(raw, cut, 1.0).tolist() == [2.0, 2.0, -6.0]
    assert penalize_scores(raw, cut, 1.0, "replace").tolist() == [2.0, -1.0, -1.0]
    assert penalize_scores(raw, cut, 1.0, clip=2.5).tolist() == [2.0, 1.5, -3.5]  # clip, then penalize
    assert penalize_scores(raw, cut, 0.0).tolist() == [2.0, 3.0, -5.0]

    # left padding: positions count real tokens only; padded slots get 1 as in `generate`
    assert position_ids_from_mask(torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 0]])).tolist() == \
        [[1, 1, 0, 1, 2], [0, 1, 2, 3, 1]]

    # columns: raw score, penalized score, KL, RLHF reward, length, EOS
    rows = torch.tensor([[1.0, 1.0, 0.5, 0.95, 2.0, 1.0], [3.0, 2.0, 1.5, 1.85, 6.0, 0.0]])
    m = sample_metrics(rows)
    assert m["score"] == 2.0 and m["kl"] == 1.0 and m["response_length"] == 4.0 and m["eos_rate"] == 0.5
    assert m["reward_length_corr"] == pytest.approx(1.0)  # two points lie on a line
    assert sample_metrics(rows[:1])["reward_length_corr"] is None

    prompts = [f"p{i}" for i in range(5)]
    # two ranks take disjoint slices of the same shuffle; an epoch boundary reshuffles
    r0, r1 = prompt_batch(prompts, 0, 2, 0, 2, seed=0), prompt_batch(prompts, 0, 2, 1, 2, seed=0)
    assert len(set(r0 + r1)) == 4
    assert prompt_batch(prompts, 3, 2, 0, 1, seed=0) == prompt_batch(prompts, 3, 2, 0, 1, seed=0)
    assert step_seed(0, 1, 0) != step_seed(0, 1, 1) != step_seed(0, 2, 1)
    assert not math.isnan(m["rlhf_reward"])


def test_reward_scores_are_normalized_on_the_reward_models_training_responses(tmp_path, monkeypatch):
    import statistics

    import reward
    from core.io import write_jsonl
    from rl.pg_inputs import load_reward_fn

    class Scorer:  # reward = length of the response in characters
        def score(self, prompts, responses):
            return [float(len(r)) for r in responses]

    monkeypatch.setattr(reward, "load_scorer", lambda path, device=None: Scorer())
    rm = tmp_path / "reward"
    write_jsonl(rm / "train.jsonl", [{"prompt": "p", "chosen": "aaaa", "rejected": "aa"},
                                     {"prompt": [{"role": "user", "content": "q"}],
                                      "chosen": [{"role": "assistant", "content": "aaaaaa"}], "rejected": "a"}])
    fn, norm = load_reward_fn(rm, "run", "cpu")
    ref = [4.0, 2.0, 6.0, 1.0]
    assert norm["mean"] == pytest.approx(3.25) and norm["std"] == pytest.approx(statistics.stdev(ref), rel=1e-6)
    assert fn(["x", "y"], ["aaa", "aaaaaaa"]) == pytest.approx([(3 - 3.25) / norm["std"], (7 - 3.25) / norm["std"]])
    raw_fn, none = load_reward_fn(rm, "run", "cpu", normalize=False)
    assert none is None and raw_fn(["x"], ["aaa"]) == [3.0]


def test_iterations_default_to_one_pass_over_the_prompts():
    from rl.pg_inputs import total_iterations

    assert total_iterations(-1, 1.0, n_prompts=1000, batch_size=64, world=1) == 16  # ceil(1000 / 64)
    assert total_iterations(-1, 2.0, n_prompts=1000, batch_size=64, world=4) == 8   # ceil(2000 / 256)
    assert total_iterations(-1, 1.0, n_prompts=3, batch_size=64, world=1) == 1
    assert total_iterations(30, 1.0, n_prompts=1000, batch_size=64, world=1) == 30


def test_held_out_objective_is_measured_on_prompts_kept_out_of_training(tiny_run, prompts_file, tmp_path):
    """val_prompts: a seeded draw of the training prompts never trained on, measured every
    eval_steps and at the end as score − β·KL with the fixed objective_kl_coef (rl/heldout.py)."""
    from rl.heldout import split_prompts
    from rl.ppo import main

    train, held = split_prompts(PROMPTS, 3, seed=0)
    assert len(held) == 3 and sorted(train + held) == sorted(PROMPTS)
    assert train == [p for p in PROMPTS if p not in held]  # the training prompts keep their order
    # the project's hold-out hash: the same prompts whatever the file's order, and as messages
    assert sorted(split_prompts(PROMPTS[::-1], 3, seed=0)[1]) == sorted(held)
    assert [m[0]["content"] for m in split_prompts([[{"role": "user", "content": p}] for p in PROMPTS], 3, 0)[1]] \
        == held
    assert sorted(split_prompts(PROMPTS, 3, seed=1)[1]) != sorted(held)
    seen = []

    def reward(prompts, responses):
        seen.extend(p[-1]["content"] for p in prompts)
        return [float(r.count("day")) for r in responses]

    out = tmp_path / "ppo"
    metrics = main(_cfg(tiny_run, out, prompts_file, max_steps=4, val_prompts=3, eval_steps=2,
                        objective_kl_coef=0.5), reward_fn=reward)
    assert metrics["prompts"] == 5 and metrics["val_prompts"] == 3  # 8 training prompts, 3 held out
    held_text = set(held)
    rows = _log(out)
    evals = [r for r in rows if "eval_objective" in r]
    assert [r["step"] for r in evals] == [2, 4]
    for r in evals:
        assert r["eval_objective"] == pytest.approx(r["eval_score"] - 0.5 * r["eval_kl"])
    assert metrics["val_objective"] == pytest.approx(metrics["val_score"] - 0.5 * metrics["val_kl"])
    # the reward saw: steps 1-2 (4 prompts each), an evaluation (the 3 held out), steps 3-4, one
    # more, and the final one; no training step drew a held-out prompt
    assert len(seen) == 4 + 4 + 3 + 4 + 4 + 3 + 3
    training, evaluations = seen[:8] + seen[11:19], [seen[8:11], seen[19:22], seen[22:]]
    assert not held_text & set(training)
    assert all(sorted(e) == sorted(held_text) for e in evaluations)


def test_summary_start_and_end_never_share_iterations():
    """metrics.json's *_start / *_end: means over the watch window, or half the run when it is
    shorter than two windows, so a 2-iteration run reports its first score against its last."""
    from rl.pg_loop import summarize

    history = [{"score": s, "kl": 0.1 * i} for i, s in enumerate([-2.87, -2.70])]
    out = summarize(history, window=5)
    assert out["score_start"] == pytest.approx(-2.87) and out["score_end"] == pytest.approx(-2.70)
    history = [{"score": float(s)} for s in range(12)]
    out = summarize(history, window=5)
    assert out["score_start"] == pytest.approx(2.0) and out["score_end"] == pytest.approx(9.0)  # 0-4, 7-11
    out = summarize(history[:7], window=5)
    assert out["score_start"] == pytest.approx(1.0) and out["score_end"] == pytest.approx(5.0)  # 0-2, 4-6
    assert out["entropy_start"] is None and summarize([], 5) == {}
