"""A conversation's system prompt and earlier turns reach every stage: reward encoding (training and
scoring), the DPO dataset handed to TRL, PPO rollout prompts and their reward, and eval prompts."""
import json
from types import SimpleNamespace

import pytest
import torch

from core.config import EvalConfig, UserError, load_config
from core.generation import chat_prompt, encode_prompts
from core.models import load_tokenizer
from core.records import read_preferences, read_prompts
from demo.tokenizer import IM_START, render_chat

SYS = {"role": "system", "content": "You are the shop's assistant. Be brief."}
U1 = {"role": "user", "content": "Do you sell kettles?"}
A1 = {"role": "assistant", "content": "Yes, three models."}
U2 = {"role": "user", "content": "Which is cheapest?"}
CONV = [SYS, U1, A1, U2]
GOOD, BAD = "The Basic, at $19.", "Kettles boil water."


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def pref_file(tmp_path):
    """One explicit-prompt and one implicit-prompt conversational pair, plus a plain pair."""
    f = tmp_path / "pref.jsonl"
    rows = [{"prompt": CONV, "chosen": [{"role": "assistant", "content": GOOD}],
             "rejected": [{"role": "assistant", "content": BAD}]},
            {"chosen": CONV + [{"role": "assistant", "content": GOOD}],
             "rejected": CONV + [{"role": "assistant", "content": BAD}]},
            {"prompt": "Are you open on Sunday?", "chosen": "No.", "rejected": "Yes."}]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


# ---------------------------------------------------------------- reward model input

def test_reward_encoding_with_chat_template_keeps_system_and_turns(tiny_base, pref_file):
    from reward.model import encode
    from reward.train import encode_rows

    tok = load_tokenizer(tiny_base)
    rows = read_preferences(pref_file)
    items = encode_rows(rows, tok, "decoder", 512)
    want = render_chat(CONV + [{"role": "assistant", "content": GOOD}])
    assert tok.decode(items[0]["chosen"]["input_ids"]) == want  # training: the whole conversation
    assert tok.decode(items[1]["chosen"]["input_ids"]) == want  # implicit prompt: the same
    assert tok.decode(items[0]["rejected"]["input_ids"]).endswith(f"{IM_START}assistant\n{BAD}<|im_end|>")
    plain = encode(tok, "decoder", "Are you open on Sunday?", "No.", 512)  # a plain prompt, as before
    assert tok.decode(plain["input_ids"]) == render_chat([{"role": "user", "content": "Are you open on Sunday?"},
                                                          {"role": "assistant", "content": "No."}])


def test_reward_encoding_without_template_and_for_encoders_uses_the_plain_rendering(tiny_base):
    from reward.model import default_backbone, encode

    tok = load_tokenizer(tiny_base)
    tok.chat_template = None
    text = ("System: You are the shop's assistant. Be brief.\n\nUser: Do you sell kettles?\n\n"
            "Assistant: Yes, three models.\n\nUser: Which is cheapest?")
    ids = encode(tok, "decoder", CONV, GOOD, 512)["input_ids"]
    assert tok.decode(ids) == f"{text}\n\n{GOOD}<|im_end|>"
    enc_tok = load_tokenizer(default_backbone())  # MiniLM: the text pair (prompt text, response)
    pair = encode(enc_tok, "encoder", CONV, GOOD, 256)
    assert pair["input_ids"] == enc_tok(text, GOOD)["input_ids"]
    decoded = enc_tok.decode(pair["input_ids"])
    assert decoded.startswith("[CLS] system : you are the shop ' s assistant. be brief. user : do you sell kettles")
    assert "assistant : yes, three models. user : which is cheapest? [SEP] the basic" in decoded


def test_scorer_and_score_file_score_the_whole_conversation(tiny_base, tmp_path):
    from reward.model import build_reward_model, lora_seq_cls_config, save_reward_model
    from reward.score import Scorer, load_scorer, score_file
    from core.config import RewardConfig

    tok = load_tokenizer(tiny_base)
    scorer = Scorer(SimpleNamespace(kind="decoder"), tok, {"max_length": 512}, torch.device("cpu"))
    assert tok.decode(scorer.encode([CONV], [GOOD])[0]["input_ids"]) == render_chat(
        CONV + [{"role": "assistant", "content": GOOD}])

    torch.manual_seed(0)
    rm = build_reward_model(tiny_base, tok, torch.device("cpu"),
                            lora_seq_cls_config(load_config(RewardConfig, None, {"lora_r": 4})))
    with torch.no_grad():
        for p in rm.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.3)
    save_reward_model(tmp_path / "rm", rm.eval(), tok, tiny_base, max_length=128)
    real = load_scorer(tmp_path / "rm", device="cpu")
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": CONV, "response": GOOD, "id": "c"}) + "\n"
                    + json.dumps({"prompt": [U2], "response": GOOD, "id": "last-only"}) + "\n")
    scored = [json.loads(x) for x in score_file(tmp_path / "rm", rows).read_text().splitlines()]
    whole, last_only = real.score([CONV, "Which is cheapest?"], [GOOD, GOOD])
    assert [s["reward"] for s in scored] == pytest.approx([whole, last_only], abs=1e-6)
    assert scored[0]["prompt"] == CONV  # the rows come back as they were given
    assert abs(whole - last_only) > 1e-4  # the earlier turns change the score
    from core.rowfiles import DataError

    rows.write_text(json.dumps({"prompt": "Hi"}) + "\n")  # a prompts file: no response to score
    with pytest.raises(DataError, match=r"response: missing \(nothing was scored\)"):
        score_file(tmp_path / "rm", rows)


# ---------------------------------------------------------------- DPO

def test_dpo_dataset_rows_carry_the_full_prompt(tiny_base, pref_file):
    from trl.data_utils import maybe_apply_chat_template

    from rl.dpo import split_by_prompt, to_dataset

    rows = read_preferences(pref_file)
    ds = to_dataset(rows, [0.0, 0.1, 0.0])
    assert ds[0]["prompt"] == ds[1]["prompt"] == CONV
    assert ds[0]["chosen"] == [{"role": "assistant", "content": GOOD}]
    assert ds[1]["rejected"] == [{"role": "assistant", "content": BAD}]
    assert ds[2]["prompt"] == [{"role": "user", "content": "Are you open on Sunday?"}]
    text = maybe_apply_chat_template(ds[0], load_tokenizer(tiny_base))  # what TRL tokenizes
    assert text["prompt"] == render_chat(CONV) + f"{IM_START}assistant\n"
    train, val = split_by_prompt(rows, 0.5, seed=0)
    assert len(train) + len(val) == 3 and val and train
    assert (rows[0] in val) == (rows[1] in val)  # one conversation: both of its pairs on one side


# ---------------------------------------------------------------- PPO

def test_ppo_prompts_render_the_system_message_and_the_reward_sees_it(tiny_base, tmp_path, monkeypatch):
    import reward
    from rl.pg_inputs import load_reward_fn, load_train_prompts

    f = tmp_path / "prompts.jsonl"
    f.write_text(json.dumps({"prompt": CONV, "tags": ["pref"]}) + "\n"
                 + json.dumps({"prompt": "Held out?", "tags": ["eval"]}) + "\n")
    prompts = load_train_prompts(f)
    assert prompts == [CONV]
    tok = load_tokenizer(tiny_base)
    enc = encode_prompts(tok, prompts, "cpu")
    assert tok.decode(enc["input_ids"][0]) == render_chat(CONV) + f"{IM_START}assistant\n"

    seen = []
    monkeypatch.setattr(reward, "load_scorer", lambda path, device=None: SimpleNamespace(
        score=lambda p, r: seen.append((p, r)) or [float(len(x)) for x in r]))
    rm_dir = tmp_path / "rm"
    rm_dir.mkdir()
    (rm_dir / "train.jsonl").write_text(json.dumps({"prompt": CONV, "chosen": GOOD, "rejected": BAD}) + "\n"
                                        + json.dumps({"prompt": "Plain?", "chosen": "a", "rejected": "bb"}) + "\n")
    fn, norm = load_reward_fn(rm_dir, "run", "cpu")
    plain = [{"role": "user", "content": "Plain?"}]
    assert seen[0] == ([CONV, CONV, plain, plain], [GOOD, BAD, "a", "bb"])
    assert norm is not None
    fn(prompts, ["x"])
    assert seen[-1][0] == [CONV]


# ---------------------------------------------------------------- eval

def test_eval_prompts_keep_the_conversation(tiny_base, tmp_path):
    from eval.human import ab_item_id, ab_items
    from eval.stage import _row, load_eval_prompts

    held, red = tmp_path / "prompts.jsonl", tmp_path / "red.jsonl"
    held.write_text(json.dumps({"prompt": CONV, "tags": ["eval"]}) + "\n"
                    + json.dumps({"prompt": "Train only?", "tags": ["pref"]}) + "\n")
    red.write_text(json.dumps({"prompt": [SYS, U1]}) + "\n")
    prompts, redteam = load_eval_prompts(load_config(EvalConfig, None, {"prompts": str(held), "redteam": str(red)}))
    assert prompts == [CONV] and redteam == [[SYS, U1]]
    tok = load_tokenizer(tiny_base)
    assert chat_prompt(tok, prompts[0]) == render_chat(CONV) + f"{IM_START}assistant\n"
    row = _row("sft", "greedy", "heldout", prompts[0], {"response": ["r"]}, 0)
    assert row["prompt"].startswith("System: You are the shop's assistant.")
    assert ab_item_id("a", "b", "Plain?") == ab_item_id("a", "b", [{"role": "user", "content": "Plain?"}])
    assert ab_items("a", "b", [CONV], ["x"], ["y"])[0]["prompt"] == CONV


def test_a_template_without_system_role_is_a_user_error(tiny_base):
    tok = load_tokenizer(tiny_base)
    tok.chat_template = ("{% for m in messages %}{% if m['role'] == 'system' %}"
                         "{{ raise_exception('System role not supported') }}{% endif %}{{ m['content'] }}{% endfor %}")
    with pytest.raises(UserError, match="cannot render a conversation with roles system/user/assistant/user: "
                                        "System role not supported"):
        chat_prompt(tok, CONV)


def test_prompt_files_with_conversations_read_for_collect(tmp_path):
    from collect.generate import pref_prompts

    f = tmp_path / "prompts.jsonl"
    f.write_text(json.dumps({"id": "x", "prompt": CONV, "tags": ["pref"]}) + "\n")
    assert pref_prompts(f, 5)[0]["prompt"] == CONV == read_prompts(f)[0]["prompt"]
