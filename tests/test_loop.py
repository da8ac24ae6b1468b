"""`rlhf loop` on a researcher's own model: a tiny random Qwen2 whose EOS is not its end-of-turn
token, TRL-format data, one command. With preferences it runs sft → reward → dpo → ppo → eval and
the merged export generates with plain transformers; without, it stops at annotation with the
commands to run, and the same command finishes once the votes are in."""
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from own_model import build_qwen, write_data

EOS_FIX = ["--eos_token", "<|im_end|>"]


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    folder = tmp_path_factory.mktemp("own")
    return {"model": build_qwen(folder / "qwen"), **write_data(folder)}


def rlhf(*args, cwd=None):
    """The installed command, as a user runs it: (exit code, stdout + stderr)."""
    rlhf_bin = Path(sys.executable).with_name("rlhf")
    p = subprocess.run([str(rlhf_bin), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=900)
    return p.returncode, p.stdout + p.stderr


def loop_args(own, run, *extra):
    return ["loop", "--model", own["model"], "--sft", own["sft"], "--prompts", own["prompts"], "--run", run,
            "--quick", "--threads", "1", *EOS_FIX, *extra]


def test_preflight_names_the_fix(own, tmp_path):
    code, out = rlhf("loop", "--model", own["model"], "--sft", own["sft"], "--prompts", own["prompts"],
                     "--preferences", own["preferences"], "--run", tmp_path / "run", "--quick")
    assert code == 2 and "Traceback" not in out
    assert "pass --eos_token '<|im_end|>'" in out


def test_loop_with_preferences_end_to_end_and_merged_export(own, tmp_path):
    run = tmp_path / "run"
    code, out = rlhf(*loop_args(own, run, "--preferences", own["preferences"]))
    assert code == 0, out
    assert "Warning" not in out, out  # no library deprecation notes on the user's terminal
    for stage in ("sft", "reward", "dpo", "ppo", "rloo", "eval"):
        assert json.loads((run / stage / "inputs.json").read_text())["status"] == "done", stage
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert {"base", "sft", "dpo", "ppo", "rloo"} <= set(metrics["policies"])  # the external base is compared too
    assert metrics["judges"]["no_gold_because"].startswith("no gold judge")
    assert "reward-model score" in (run / "eval" / "report.html").read_text()
    # the system prompt survives the implicit-prompt split into DPO's and the reward model's pairs
    from own_model import SYSTEM

    for stage in ("dpo", "reward"):
        pair = json.loads((run / stage / "train.jsonl").read_text().splitlines()[0])
        assert pair["prompt"][0] == {"role": "system", "content": SYSTEM} and pair["prompt"][1]["role"] == "user"
    sample = json.loads((run / "eval" / "samples.jsonl").read_text().splitlines()[0])
    assert sample["prompt"].startswith(f"System: {SYSTEM}")
    tagged = [json.loads(x)["tags"] for x in (run / "data" / "prompts.jsonl").read_text().splitlines()]
    assert tagged.count(["eval"]) >= 1 and tagged.count(["pref"]) > 40
    # --quick evaluates 8 held-out prompts: the count printed says so where more are held out
    held = tagged.count(["eval"])
    assert (f"{held} held out for eval" + (" (eval reads the first 8: max_prompts)" if held > 8 else "")
            + " → ") in out, out
    rows = [json.loads(x) for x in (run / "eval" / "samples.jsonl").read_text().splitlines()]
    assert len({r["prompt"] for r in rows if r["set"] == "heldout"}) == min(8, held)

    code, again = rlhf(*loop_args(own, run, "--preferences", own["preferences"]))
    assert code == 0 and again.count("up to date, skipped") == 6, again

    merged = tmp_path / "merged"
    # no --eos_token this time: export takes the tokenizer the run trained with (sft/)
    code, out = rlhf("export", "--run", run, "--policy", "ppo", "--merge", merged)
    assert code == 0, out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(merged), AutoModelForCausalLM.from_pretrained(merged)
    assert tok.eos_token == "<|im_end|>" and model.generation_config.eos_token_id == tok.eos_token_id
    assert model.config.eos_token_id == tok.eos_token_id
    # a second export replaces the first; a stage's directory, a file or someone's folder is refused
    code, out = rlhf("export", "--run", run, "--policy", "dpo", "--merge", merged)
    assert code == 0 and f"replacing the earlier export in {merged}" in out, out
    (tmp_path / "afile").write_text("x")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    for target, why in [(run / "sft", "already holds other files"), (tmp_path / "afile", "is a file"),
                        (tmp_path / "mine", "already holds other files")]:
        code, out = rlhf("export", "--run", run, "--policy", "ppo", "--merge", target)
        assert code == 2 and why in out and "Traceback" not in out, out
    assert (tmp_path / "mine" / "notes.txt").read_text() == "x" and (run / "sft" / "adapter_config.json").exists()
    # a name that is not one of the run's policies, or a reward model, is not a policy
    code, out = rlhf("chat", "--run", run, "--policy", "reward")
    assert code == 2 and f"--policy 'reward': not a policy of {run} (found: base, sft, dpo, ppo, rloo)" in out, out
    code, out = rlhf("chat", "--run", run, "--policy", run / "reward")
    assert code == 2 and "is a reward model, not a policy" in out, out
    enc = tok.apply_chat_template([{"role": "user", "content": "Do you bake pie on Monday?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    generated = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] > enc["input_ids"].shape[1]


def test_loop_without_preferences_waits_for_votes_then_finishes(own, tmp_path):
    from collect.assign import next_item
    from collect.commands import store_for
    from collect.users import add_user
    from collect.votes import submit_vote

    run = tmp_path / "run"
    fresh = tmp_path / "fresh.yaml"  # fresh: true from a config file, which the command to run again keeps
    fresh.write_text("fresh: true\n")
    code, out = rlhf(*loop_args(own, run, "--config", fresh))
    assert code == 3, out  # stopped to wait: neither done (0) nor a mistake (2)
    assert "waiting for votes" in out and "give 0 preference pair(s) so far" in out and "needs 4" in out
    assert f"rlhf collect serve --run {run}" in out
    assert f"rlhf collect users add --run {run} NAME --role annotator" in out
    again = "rlhf " + shlex.join(str(a) for a in loop_args(own, run, "--config", fresh))
    assert again in out and "'<|im_end|>'" in again  # the same command, quoted for a shell, to run again
    assert "First take `fresh: true` out of the --config file" in out
    assert not (run / "reward").exists()

    store = store_for(run)
    try:
        add_user(store, "ann", "annotator", "a long enough password")
        for _ in range(5):
            view = next_item(store, "ann", overlap=1, gold_rate=0.0)
            submit_vote(store, "ann", view.item_id, "left", {}, {})
    finally:
        store.close()
    code, out = rlhf(*loop_args(own, run))
    assert code == 0, out
    assert "sft: up to date, skipped" in out and "waiting for votes" not in out
    prefs = (run / "collect" / "preferences.jsonl").read_text().splitlines()
    assert len(prefs) == 5
    assert json.loads((run / "eval" / "inputs.json").read_text())["status"] == "done"


def test_fingerprints_leave_the_run_directory_out(tmp_path):
    from core.config import DPOConfig
    from loop.runner import portable

    a = DPOConfig(run=str(tmp_path / "a"), model=str(tmp_path / "a" / "base"), data="/data/prefs.jsonl")
    b = DPOConfig(run=str(tmp_path / "b"), model=str(tmp_path / "b" / "base"), data="/data/prefs.jsonl")
    assert portable(a) == portable(b)
    assert (portable(a).run, portable(a).model, portable(a).data) == ("", "<run>/base", "/data/prefs.jsonl")
    assert portable(a) != portable(DPOConfig(run=str(tmp_path / "a"), model="/models/other"))


def test_fresh_deletes_only_what_the_loop_wrote_and_keeps_votes(tmp_path, capsys):
    """--fresh on a run: the stage outputs go, people's votes are moved aside, and files the loop
    did not write stay; an input file inside an output refuses before anything is touched."""
    from core.config import UserError
    from loop.runner import clear_run

    run = tmp_path / "run"
    for d in ("sft", "reward", "dpo", "collect", "rounds/2/collect", "data"):
        (run / d).mkdir(parents=True)
    (run / "collect" / "annotations.db").write_text("votes")
    (run / "dpo.console.log").write_text("log")
    (run / "loop.json").write_text("{}")
    (run / "notes.txt").write_text("mine")
    (run / "reward_old").mkdir()
    (run / "data" / "sft.jsonl").write_text("{}")

    with pytest.raises(UserError, match=r"--fresh would delete .*data, which holds the input .*sft\.jsonl"):
        clear_run(run, ("dpo",), keep=("collect", "rounds"), inputs=(run / "data" / "sft.jsonl",))
    assert (run / "sft").is_dir() and (run / "collect" / "annotations.db").exists()  # nothing touched

    clear_run(run, ("dpo",), keep=("collect", "rounds"), inputs=(tmp_path / "elsewhere.jsonl",))
    left = sorted(p.name for p in run.iterdir())
    assert [n for n in left if ".stale-" not in n] == ["notes.txt", "reward_old"]
    stale = [n for n in left if ".stale-" in n]
    assert sorted(n.split(".stale-")[0] for n in stale) == ["collect", "rounds"]
    collect = next(run / n for n in stale if n.startswith("collect"))
    assert (collect / "annotations.db").read_text() == "votes"
    assert "kept notes.txt, reward_old" in capsys.readouterr().out

    clear_run(tmp_path / "missing")  # nothing there: nothing to do

    # a directory the loop never wrote to, with folders of the loop's names: nothing is deleted
    mine = tmp_path / "myproject"
    (mine / "data").mkdir(parents=True)
    (mine / "data" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"--fresh: .*myproject holds data but no record of a loop"):
        clear_run(mine, ("dpo",), keep=("collect", "rounds"))
    assert (mine / "data" / "notes.txt").read_text() == "mine"


def test_the_command_to_run_again_drops_fresh():
    from loop.collect import rerun_argv, waiting_message

    argv = ["loop", "--run", "r", "--fresh", "--quick", "--fresh", "true", "--fresh=1", "--seed", "0"]
    assert rerun_argv(argv) == ["loop", "--run", "r", "--quick", "--seed", "0"]
    msg = waiting_message(Path("r"), 0, {}, 4, ["loop", "--fresh", "--run", "r"])
    assert "rlhf loop --run r" in msg and "--fresh" not in msg


def test_every_input_file_is_checked_before_the_first_stage(own, tmp_path):
    """A broken preference row, or a file of pairs that are all the same text, stops the loop
    before SFT trains: exit 2, one line naming the file and row."""
    bad = tmp_path / "prefs_bad.jsonl"
    rows = [json.loads(x) for x in Path(own["preferences"]).read_text().splitlines()]
    bad.write_text("\n".join(json.dumps({k: v for k, v in r.items() if (i != 2 or k != "rejected")})
                             for i, r in enumerate(rows)) + "\n")
    code, out = rlhf(*loop_args(own, tmp_path / "run", "--preferences", bad))
    assert code == 2 and "Traceback" not in out and len(out.strip().splitlines()) == 1, out
    assert f"{bad}:3: rejected: missing" in out
    assert not (tmp_path / "run" / "sft").exists()

    same = tmp_path / "prefs_same.jsonl"
    from core.records import read_preferences

    same.write_text("\n".join(json.dumps({"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["chosen"]})
                              for r in read_preferences(own["preferences"])) + "\n")
    code, out = rlhf(*loop_args(own, tmp_path / "run", "--preferences", same))
    assert code == 2 and f"--preferences {same}: in all {len(rows)} pairs the chosen and the rejected" in out, out
    assert not (tmp_path / "run" / "sft").exists()


def test_a_prompts_file_with_answers_is_noted(tmp_path, capsys):
    """SFT or preference rows given as --prompts: their answers are dropped, and the loop says so."""
    from loop.run import check_prompt_file

    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}) + "\n")
    check_prompt_file("--prompts", str(path))
    assert capsys.readouterr().out == (f"[loop] note: --prompts {path}: its chosen, rejected columns are ignored: "
                                       "the loop takes only each row's prompt from it\n")
    path.write_text(json.dumps({"prompt": "Hi"}) + "\n")
    check_prompt_file("--prompts", str(path))
    assert capsys.readouterr().out == ""


def test_an_edited_chat_template_reruns_the_stages_that_read_it(own, tmp_path):
    from core.runcard import fingerprint
    from loop.config import LoopConfig
    from loop.run import plan, stage_configs

    template = tmp_path / "chat.jinja"
    template.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    cfg = LoopConfig(run=str(tmp_path / "run"), model=str(own["model"]), sft=str(own["sft"]),
                     prompts=str(own["prompts"]), preferences=str(own["preferences"]), chat_template=str(template))
    stages = plan(cfg, stage_configs(cfg))

    def prints():
        return {st.name: fingerprint(st.cfg, st.inputs() if callable(st.inputs) else st.inputs) for st in stages}

    before = prints()
    template.write_text("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}")
    after = prints()
    assert {name for name in before if before[name] != after[name]} == {st.name for st in stages}
