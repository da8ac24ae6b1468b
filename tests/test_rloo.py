"""RLOO: rl/rloo_math.py against hand-computed numbers, and the stage on tiny models (what trains and
what must not, the run directory, exact resume, that it really optimizes the reward)."""
import math

import pytest
import torch

from core.config import ConfigError, RLOOConfig, load_config
from rl.ppo_math import per_token_rewards
from rl.rloo_math import leave_one_out_advantages, rloo_loss, sequence_rewards
from test_ppo_stage import PROMPTS, _log, head_run, prompts_file, word_reward  # noqa: F401 (fixtures)


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


# ---------------------------------------------------------------- the math

def test_leave_one_out_advantages_by_hand():
    """k = 3, prompt 1 rewards (1, 2, 6): baselines (2+6)/2 = 4, (1+6)/2 = 3.5, (1+2)/2 = 1.5 →
    advantages (−3, −1.5, 4.5); prompt 2 (0, 0, 3): baselines 1.5, 1.5, 0 → (−1.5, −1.5, 3)."""
    adv = leave_one_out_advantages(t([1, 2, 6, 0, 0, 3]), k=3)
    assert adv.tolist() == pytest.approx([-3.0, -1.5, 4.5, -1.5, -1.5, 3.0])
    assert adv.view(2, 3).sum(-1).tolist() == pytest.approx([0.0, 0.0])  # each group sums to 0
    # k = 2: each sample's baseline is the other one: (5, 1) → (4, −4)
    assert leave_one_out_advantages(t([5, 1]), k=2).tolist() == [4.0, -4.0]
    # the same prompt's identical rewards carry no signal
    assert leave_one_out_advantages(t([2, 2, 2, 2]), k=4).tolist() == [0.0] * 4
    with pytest.raises(ValueError, match="k >= 2"):
        leave_one_out_advantages(t([1, 2]), k=1)
    with pytest.raises(ValueError, match="groups of k=3"):
        leave_one_out_advantages(t([1, 2, 3, 4]), k=3)


def test_sequence_reward_is_score_minus_beta_times_summed_kl():
    """Row 1: score 1, KL (0.5, 0.25, pad 9): 1 − 0.1·0.75 = 0.925. Row 2: score 2, KL (−0.1, 0.3,
    0.2): 2 − 0.1·0.4 = 1.96. The padded KL never counts; PPO's per-token rewards sum to the same."""
    score, kl, mask = t([1.0, 2.0]), t([[0.5, 0.25, 9.0], [-0.1, 0.3, 0.2]]), t([[1, 1, 0], [1, 1, 1]])
    r = sequence_rewards(score, kl, mask, kl_coef=0.1)
    assert r.tolist() == pytest.approx([0.925, 1.96])
    torch.testing.assert_close(r, per_token_rewards(score, kl * mask, mask, 0.1).sum(-1))


def test_rloo_loss_values_clipping_and_gradient():
    """ρ = (1.5, 0.5), A = (2, −1).
    Unclipped (clip 0): mean(−2·1.5, 1·0.5) = mean(−3, 0.5) = −1.25.
    Clipped at ε = 0.2: row 1 max(−3, −2·1.2 = −2.4) = −2.4; row 2 max(0.5, 1·0.8) = 0.8 →
    mean −0.8, both rows clipped. approx_kl = mean((ρ − 1) − log ρ) = mean(0.094535, 0.193147)."""
    old = t([-1.0, -2.0])
    logp = old + torch.log(t([1.5, 0.5]))
    adv = t([2.0, -1.0])
    loss, m = rloo_loss(logp, old, adv, clip_eps=0.0)
    assert loss.item() == pytest.approx(-1.25) and m["clipfrac"].item() == 0.0
    loss, m = rloo_loss(logp, old, adv, clip_eps=0.2)
    assert loss.item() == pytest.approx(-0.8) and m["clipfrac"].item() == 1.0
    assert m["ratio"].item() == pytest.approx(1.0)
    assert m["approx_kl"].item() == pytest.approx((0.5 - math.log(1.5) - 0.5 - math.log(0.5)) / 2)
    # inside the clip range nothing is clipped: ρ = 1.1, A = 1 → −1.1
    loss, m = rloo_loss(t([math.log(1.1)]), t([0.0]), t([1.0]), clip_eps=0.2)
    assert loss.item() == pytest.approx(-1.1) and m["clipfrac"].item() == 0.0
    # at ρ = 1 the gradient is REINFORCE's: d loss / d log π_i = −A_i / B = (−1, 0.5)
    lp = old.clone().requires_grad_(True)
    rloo_loss(lp, old, adv, clip_eps=0.0)[0].backward()
    assert lp.grad.tolist() == pytest.approx([-1.0, 0.5])


# ---------------------------------------------------------------- the stage

def _cfg(run, out, prompts, **kw):
    base = dict(run=str(run), out=str(out), prompts=str(prompts), max_steps=3, batch_size=2, num_generations=2,
                mini_batch_size=2, max_new_tokens=6, threads=1, save_steps=2, lora_r=4, lora_alpha=8,
                learning_rate=1e-2)
    base.update(kw)
    return load_config(RLOOConfig, None, base)


def test_stage_trains_the_policy_only_and_writes_the_run_dir(tiny_run, prompts_file, tmp_path):
    from safetensors.torch import load_file

    from rl import rloo

    built = {}
    real_build = rloo.pg_loop.build_actor_critic

    def spy(*a, **kw):  # keep the model to compare its weights with the starting ones
        built["ac"] = real_build(*a, **kw)
        built["before"] = {n: p.detach().clone() for n, p in built["ac"].named_parameters()}
        return built["ac"]

    rloo.pg_loop.build_actor_critic = spy
    try:
        out = tmp_path / "rloo"
        metrics = rloo.main(_cfg(tiny_run, out, prompts_file, mini_batch_size=4), reward_fn=word_reward("day"))
    finally:
        rloo.pg_loop.build_actor_critic = real_build
    ac, before = built["ac"], built["before"]
    assert ac.value_head is None and not any(".value." in n for n, _ in ac.named_parameters())
    changed = {n for n, p in ac.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(".policy." in n for n in changed), "only the policy adapter may change"
    assert any(".ref." in n for n in before) and any(".base_layer." in n for n in before)

    for f in ("adapter_config.json", "adapter_model.safetensors", "config.yaml", "metrics.json", "log.jsonl",
              "README.md"):
        assert (out / f).exists(), f
    assert not (out / "value").exists()
    rows = _log(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    for key in ("score", "kl", "rlhf_reward", "entropy", "response_length", "eos_rate", "policy_loss",
                "clipfrac", "ratio", "grad_norm", "advantage_abs_mean", "kl_coef"):
        assert key in rows[-1], key
    # one pass in one minibatch: every update is on-policy, plain REINFORCE. The rollout's and the
    # update's log-probs come from forwards over different batches (sizes, padding), which in
    # float32 put the ratio up to ~1e-3 from 1 for a peaked policy (measured: 0.9997-1.0009)
    assert all(r["ratio"] == pytest.approx(1.0, abs=5e-3) and r["clipfrac"] == 0 for r in rows)
    assert metrics["steps"] == 3 and not metrics["watchdog"]["tripped"] and metrics["prompts"] == len(PROMPTS)
    assert "explained_variance_end" not in metrics and metrics["memory_bytes"]["value"] == 0
    assert "rlhf-loop rloo" in (out / "README.md").read_text()
    trained, sft = load_file(str(out / "adapter_model.safetensors")), load_file(
        str(tiny_run / "sft" / "adapter_model.safetensors"))
    assert trained.keys() == sft.keys() and any(not torch.equal(trained[k], sft[k]) for k in sft)


def test_rollout_groups_k_samples_per_prompt(tiny_run):
    from core.device import resolve_device
    from core.models import load_tokenizer, lora_config
    from rl.ppo_model import build_actor_critic
    from rl.rloo import rloo_experience

    cfg = _cfg(tiny_run, "unused", "unused", num_generations=3, kl_coef=0.05)
    tok = load_tokenizer(tiny_run / "base")
    ac = build_actor_critic(tiny_run / "base", tiny_run / "sft", tok, resolve_device("cpu", threads=1),
                            lora_config(cfg), value=False)
    torch.manual_seed(0)
    r = rloo_experience(ac, tok, PROMPTS[:2], lambda p, resp: [float(len(x)) for x in resp], cfg, 0.05)
    assert r.prompts == [PROMPTS[0]] * 3 + [PROMPTS[1]] * 3 and r.advantages.shape == (6,)
    reward = r.scores - 0.05 * r.kl.sum(-1)
    want = [reward[i] - (reward[g * 3:g * 3 + 3].sum() - reward[i]) / 2  # the mean of the 2 others
            for g in (0, 1) for i in range(g * 3, g * 3 + 3)]
    torch.testing.assert_close(r.advantages, torch.stack(want))
    torch.testing.assert_close(r.rewards.sum(-1), reward)  # the logged rlhf_reward is the one optimized


def test_config_errors_before_any_work(tiny_run, prompts_file, tmp_path):
    from rl.rloo import main

    with pytest.raises(ConfigError, match="num_generations must be >= 2"):
        main(_cfg(tiny_run, tmp_path / "o", prompts_file, num_generations=1))
    with pytest.raises(ConfigError, match=r"mini_batch_size must be in \[1, batch_size × num_generations = 4\]"):
        main(_cfg(tiny_run, tmp_path / "o", prompts_file, mini_batch_size=5))
    with pytest.raises(ConfigError, match="kl_estimator"):
        main(_cfg(tiny_run, tmp_path / "o", prompts_file, kl_estimator="k9"))
    assert not (tmp_path / "o").exists()


class _Crash(Exception):
    pass


def test_resume_reproduces_the_uninterrupted_run(tiny_run, prompts_file, tmp_path):
    from rl.rloo import main

    calls = []

    def crashing(prompts, responses):
        calls.append(1)
        if len(calls) > 3:  # dies in the 4th rollout, after the checkpoint of step 2
            raise _Crash()
        return word_reward("day")(prompts, responses)

    kw = dict(max_steps=4, save_steps=2, num_iterations=2)
    full = main(_cfg(tiny_run, tmp_path / "full", prompts_file, **kw), reward_fn=word_reward("day"))
    with pytest.raises(_Crash):
        main(_cfg(tiny_run, tmp_path / "part", prompts_file, **kw), reward_fn=crashing)
    resumed = main(_cfg(tiny_run, tmp_path / "part", prompts_file, resume=True, **kw), reward_fn=word_reward("day"))

    def numbers(out):
        return [{k: v for k, v in r.items() if not k.endswith("_s")} for r in _log(out)]
    assert numbers(tmp_path / "part") == numbers(tmp_path / "full")
    assert resumed["weights_sha256"] == full["weights_sha256"]


@pytest.mark.filterwarnings("ignore:.*(tie_word_embeddings|save_embedding_layers)")  # the LM-head LoRA, on purpose
def test_rloo_learns_to_emit_the_rewarded_word(head_run, prompts_file, tmp_path):
    from rl.rloo import main

    out = tmp_path / "rloo"
    main(_cfg(head_run, out, prompts_file, max_steps=20, batch_size=4, num_generations=4, mini_batch_size=8,
              max_new_tokens=8, temperature=1.0, kl_coef=0.01, adaptive_kl=False, max_kl=0.0, missing_eos_penalty=0.0,
              save_steps=100), reward_fn=word_reward("day"))
    scores = [r["score"] for r in _log(out)]
    start, end = sum(scores[:4]) / 4, sum(scores[-4:]) / 4
    assert end > start + 2.0, scores


def test_rloo_tiny_yaml_and_cli_help(capsys):
    from pathlib import Path

    from cli.main import main as cli

    cfg = load_config(RLOOConfig, Path(__file__).resolve().parents[1] / "configs" / "rloo" / "tiny.yaml")
    assert (cfg.batch_size * cfg.num_generations, cfg.num_iterations) == (16, 1)  # PPO's tiny.yaml: 16 rollouts
    assert cli(["rloo", "--help"]) == 0
    shown = capsys.readouterr().out
    assert "usage: rlhf rloo" in shown and "--num_generations" in shown and "--value_learning_rate" not in shown


def test_a_lora_shape_given_to_rloo_is_said_to_be_ignored(capsys):
    from rl.rloo import check_config

    check_config(load_config(RLOOConfig, None, {}))
    assert capsys.readouterr().err == ""
    check_config(load_config(RLOOConfig, None, {"lora_r": 32, "target_modules": "q_proj"}))
    assert "[rloo] lora_r, target_modules ignored: RLOO trains the SFT policy's own LoRA adapter" in \
        capsys.readouterr().err
