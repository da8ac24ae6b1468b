"""Pair generation on the tiny run (base + a briefly trained sft adapter), and the
`rlhf collect` command line around it."""
import io
import json
import shutil

import pytest
from sqlalchemy import select

from collect.cli import main
from collect.commands import store_for
from collect.generate import PASS_SEED_STEP, generate_pairs, item_id, most_different_pair
from collect.store import Item
from core.config import UserError

# One thread: a tiny model gains nothing from more, and on a busy shared CI machine torch's
# spinning worker threads made each sampling call 100x slower.
GEN = dict(max_new_tokens=8, batch_size=2, temperature=1.0, threads=1)


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """generate_pairs(threads=1) sets torch's process-wide thread count: give it back."""
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture
def run(tiny_run, tmp_path):
    """A private copy of the tiny run with 6 "pref" and 2 "eval" prompts."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    rows = [{"id": f"pref-{k}", "prompt": f"When do you open on day {k}?", "tags": ["pref"]}
            for k in range(6)]
    rows += [{"id": f"eval-{k}", "prompt": f"Eval question {k}?", "tags": ["eval"]}
             for k in range(2)]
    (run / "data" / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def items(run) -> list[Item]:
    store = store_for(run)
    try:
        with store.read() as s:
            return list(s.scalars(select(Item).order_by(Item.id)))
    finally:
        store.close()


def test_one_policy_sampled_twice_is_stored_with_sources_and_rerun_is_idempotent(run, capsys):
    n = generate_pairs(run, policy="sft", n=4, **GEN)
    out = capsys.readouterr().out
    stored = items(run)
    assert n == len(stored) >= 2  # the rest (if any) were identical or empty, and say so
    assert f"stored {n} items (sft vs sft) from 4 prompts" in out
    for it in stored:
        assert it.id == item_id("sft", "sft", it.meta["prompt_id"]) and "sft" not in it.id
        assert it.prompt.startswith("When do you open")  # "pref" prompts only
        assert (it.source_a, it.source_b) == ("sft", "sft")
        assert it.response_a.strip() != it.response_b.strip()
        assert it.meta["temperature"] == 1.0 and it.meta["prompt_id"].startswith("pref-")

    assert generate_pairs(run, policy="sft", n=4, **GEN) == 0  # nothing twice
    assert [(i.id, i.response_a) for i in items(run)] == [(i.id, i.response_a) for i in stored]
    more = generate_pairs(run, policy="sft", n=6, **GEN)  # only the two new prompts
    assert len(items(run)) == n + more and more <= 2


def test_ab_mode_stores_both_sources(run):
    n = generate_pairs(run, policy="sft", vs="base", n=6, round_no=2, **GEN)
    stored = items(run)
    assert n == len(stored) >= 1
    for it in stored:
        assert it.round == it.meta["round"] == 2  # a later round's comparison
        # round 2's items are not round 1's, though they compare the same policies on one prompt
        assert it.id == item_id("sft", "base", it.meta["prompt_id"], 2) != item_id("sft", "base", it.meta["prompt_id"])
        assert "sft" not in it.id and "base" not in it.id
        assert (it.source_a, it.source_b) == ("sft", "base")
    assert generate_pairs(run, policy="sft", vs="base", n=6, round_no=2, **GEN) == 0


def test_most_different_pair_picks_the_least_overlapping_non_empty_samples():
    same = "Our ceramic mug is $14."
    refusal = "I can't help with using a card that isn't yours."
    assert most_different_pair([same, same + " Thanks!", refusal]) == (0, 2)
    # word-set Jaccard: {a b c} vs {a b d} 0.5, {a b c} vs {x y} 0, {a b d} vs {x y} 0 (tie: first)
    assert most_different_pair(["a b c", "a b d", "x y"]) == (0, 2)
    assert most_different_pair(["", "a b", " ", "c d"]) == (1, 3)  # empty ones never chosen
    assert most_different_pair(["a", ""]) == (0, 1) and most_different_pair(["x", "y"]) == (0, 1)


def test_candidates_pick_the_stored_pair_from_more_samples(run, monkeypatch):
    """With candidates=4 each prompt's 4 samples (seeds seed, seed + 1000003, ...) are drawn
    and the most different two stored; candidates=2 stores the first two as they are."""
    import collect.generate as generate

    texts = ["Our mug is $14.", "Our mug is $14, thanks.", "I can't help with that.",
             "Our mug is $14!"]

    def fake_sample(model, tok, policy, prompts, seed, gen):  # one batch from seed 0: the k-th
        return [texts[seed // 1_000_003]] * len(prompts)      # sample's seed is k * 1000003

    monkeypatch.setattr(generate, "_sample", fake_sample)
    generate_pairs(run, policy="sft", n=2, **GEN)
    assert {(i.response_a, i.response_b) for i in items(run)} == {(texts[0], texts[1])}
    (run / "collect" / "annotations.db").unlink()
    generate_pairs(run, policy="sft", n=2, candidates=4, **GEN)
    stored = items(run)
    assert len(stored) == 2 and all(i.meta["candidates"] == 4 for i in stored)
    assert {(i.response_a, i.response_b) for i in stored} == {(texts[0], texts[2])}


def test_pairs_per_prompt_adds_passes_with_their_own_seeds_and_keeps_the_first(run, monkeypatch, capsys):
    """pairs_per_prompt=2: each prompt gets a second item, sampled with seeds PASS_SEED_STEP
    further on; the first pass's items are those of pairs_per_prompt=1, ids included."""
    import collect.generate as generate

    def fake_sample(model, tok, policy, prompts, seed, gen):  # the text names the seed it came from
        return [f"seed {seed} row {i}" for i in range(len(prompts))]

    monkeypatch.setattr(generate, "_sample", fake_sample)
    assert generate_pairs(run, policy="sft", n=3, **GEN) == 3
    first = {i.id: (i.response_a, i.response_b) for i in items(run)}
    assert generate_pairs(run, policy="sft", n=3, pairs_per_prompt=2, **GEN) == 3  # only the new pass
    assert "stored 3 items (sft vs sft) from 3 prompts, 2 pairs each; already stored 3" in capsys.readouterr().out
    stored = items(run)
    assert len(stored) == 6 and {i.id: (i.response_a, i.response_b) for i in stored if i.id in first} == first
    second = [i for i in stored if i.id not in first]
    for it in second:
        pid = it.meta["prompt_id"]
        k = int(pid.split("-")[1])  # batches of 2: prompt k sits at row k % 2 of the batch starting at k - k % 2
        assert it.id == item_id("sft", "sft", pid, 1, 1) != item_id("sft", "sft", pid)
        assert it.meta["pair_no"] == 1 and it.round == 1
        assert it.response_a == f"seed {k - k % 2 + PASS_SEED_STEP} row {k % 2}"
        assert it.response_b == f"seed {k - k % 2 + PASS_SEED_STEP + 1_000_003} row {k % 2}"
    assert all("pair_no" not in i.meta for i in stored if i.id in first)
    assert generate_pairs(run, policy="sft", n=3, pairs_per_prompt=2, **GEN) == 0  # nothing twice
    with pytest.raises(UserError, match="--pairs_per_prompt 0: must be at least 1"):
        generate_pairs(run, policy="sft", n=3, pairs_per_prompt=0, **GEN)


def test_refuses_what_cannot_work(run):
    with pytest.raises(UserError, match="temperature > 0"):
        generate_pairs(run, policy="sft", n=2, temperature=0.0)
    with pytest.raises(UserError, match="--candidates 3: must be 2"):
        generate_pairs(run, policy="sft", vs="base", n=2, candidates=3, **GEN)
    with pytest.raises(FileNotFoundError, match="adapter"):
        generate_pairs(run, policy="dpo", n=2, **GEN)
    (run / "data" / "prompts.jsonl").write_text(json.dumps(
        {"id": "e", "prompt": "Eval only?", "tags": ["eval"]}) + "\n")
    with pytest.raises(UserError, match="tagged 'pref'"):
        generate_pairs(run, policy="sft", n=2, **GEN)


def test_cli_generate_users_export_report(run, capsys, monkeypatch):
    r = str(run)
    assert main(["generate", "--run", r, "--policy", "sft", "--n", "3", "--max_new_tokens", "8",
                 "--temperature", "1.0", "--threads", "1"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    assert main(["users", "add", "bob", "--role", "annotator", "--password-stdin", "--run", r]) == 0
    assert main(["users", "list", "--run", r]) == 0
    assert "bob" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["users", "add", "eve", "--role", "admin", "--password-stdin", "--run", r]) == 2
    assert "at least 12 characters" in capsys.readouterr().err
    # a name that is taken is said before any password is asked for
    monkeypatch.setattr("getpass.getpass", lambda prompt: pytest.fail(f"asked {prompt!r} for a taken name"))
    assert main(["users", "add", "bob", "--role", "annotator", "--run", r]) == 2
    assert "user 'bob' already exists" in capsys.readouterr().err
    assert main(["users", "set-role", "bob", "reviewer", "--run", r]) == 0
    assert main(["users", "deactivate", "bob", "--run", r]) == 0
    assert main(["users", "activate", "bob", "--run", r]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("bob's second long password\n"))
    assert main(["users", "reset-password", "bob", "--password-stdin", "--run", r]) == 0
    out = capsys.readouterr().out
    assert "activated bob" in out and "new password for bob; their open sessions have ended" in out
    from collect.commands import store_for
    from collect.users import verify_user

    store = store_for(run)
    try:
        assert verify_user(store, "bob", "bob's second long password").active
        assert verify_user(store, "bob", "a long password") is None
    finally:
        store.close()
    assert main(["export", "--run", r]) == 0
    assert (run / "collect" / "preferences.jsonl").exists()
    assert main(["report", "--run", r]) == 0
    assert "regular" in capsys.readouterr().out
    assert main(["serve", "--help"]) == 0
    assert "127.0.0.1" in capsys.readouterr().out
    assert main(["import", "--run", r, str(run / "missing.jsonl")]) == 2


def test_conversation_prompts_keep_their_messages(run):
    from collect.assign import PROMPT_MESSAGES

    def conv(k):
        return [{"role": "system", "content": "Answer in one line."}, {"role": "user", "content": f"Open on day {k}?"},
                {"role": "assistant", "content": "Yes."}, {"role": "user", "content": "Until when?"}]
    (run / "data" / "prompts.jsonl").write_text(
        "".join(json.dumps({"id": f"c{k}", "prompt": conv(k), "tags": ["pref"]}) + "\n" for k in range(4)))
    generate_pairs(run, policy="sft", n=4, **GEN)
    stored = items(run)
    assert stored  # a pair with identical or empty responses is skipped; not all four
    for it in stored:
        k = it.meta["prompt_id"][1:]
        assert it.meta[PROMPT_MESSAGES] == conv(k)
        assert it.prompt == (f"System: Answer in one line.\n\nUser: Open on day {k}?\n\nAssistant: Yes.\n\n"
                             "User: Until when?")


def test_two_workers_store_the_same_pairs_in_the_same_order(run, tmp_path):
    """Batches dealt to two forked processes keep their seeds and are stored in batch order."""
    other = tmp_path / "other"
    shutil.copytree(run, other)
    gen = dict(GEN, threads=2, batch_size=2)
    generate_pairs(run, policy="sft", n=6, candidates=3, **gen)
    generate_pairs(other, policy="sft", n=6, candidates=3, workers=2, **gen)

    def stored(r):
        return [(it.id, it.response_a, it.response_b) for it in sorted(items(r), key=lambda it: it.meta["at"])]

    assert stored(other) == stored(run) and len(stored(run)) >= 2
    with pytest.raises(UserError, match=r"--workers -1: must be 0 \(one per thread\) or more"):
        generate_pairs(run, policy="sft", n=2, workers=-1, **GEN)


def test_the_demo_round_passes_pairs_per_prompt_on(monkeypatch, tmp_path):
    import collect.generate as generate
    from demo.pipeline import SimulatedRoundConfig, collect_main

    seen = {}

    class Stop(Exception):
        pass

    def record(run, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(generate, "generate_pairs", record)
    with pytest.raises(Stop):
        collect_main(SimulatedRoundConfig(run=str(tmp_path), pairs_per_prompt=2, candidates=3))
    assert (seen["pairs_per_prompt"], seen["candidates"]) == (2, 3)
    assert SimulatedRoundConfig().pairs_per_prompt == 1
