"""`--db URL`: every command that opens the collect store reaches the store it names (SQLite
file or PostgreSQL schema; tests/databases.py), the run's default file stays untouched, and no
password shows in what is printed or written."""
import io
import json
from pathlib import Path

from collect import cli, commands
from core.config import EvalConfig, mask_url, to_dict
from databases import db_url  # noqa: F401 (the fixture: one test per database)
from test_demo_simulate import demo_items
from demo.simulate import cli_main as simulate_main
from eval.human import human_win_rates, send_ab
from eval.report import agreement
from loop.collect import CollectConfig, count_pairs, waiting_message
from loop.config import LoopConfig
from loop.run import stage_configs

PASSWORD_URL = "postgresql+psycopg://ann:hunter2-secret@db.example:5432/votes"


def test_every_collect_command_uses_the_db(tmp_path, db_url, capsys, monkeypatch):  # noqa: F811
    run = tmp_path / "run"
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps(r) + "\n" for r in demo_items(n=12, n_gold=0)))
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    db = ["--run", str(run), "--db", db_url]
    assert cli.main(["users", "add", "boss", "--role", "admin", "--password-stdin", *db]) == 0
    assert cli.main(["import", str(items), *db]) == 0
    assert simulate_main([*db, "--annotators", "3", "--careless", "0", "--overlap", "3"]) == 0
    assert cli.main(["users", "list", *db]) == 0
    assert cli.main(["report", *db]) == 0
    assert cli.main(["export", *db]) == 0
    out = capsys.readouterr().out
    assert "imported 12 items" in out and "3 simulated annotators cast 36 votes" in out
    assert "boss" in out and "sim3" in out and "active votes: 36 on regular items, 0 gold checks" in out
    assert "wrote 12 preference pairs" in out
    assert len((run / "collect" / "preferences.jsonl").read_text().splitlines()) == 12
    assert not (run / "collect" / "annotations.db").exists()  # the default store never opened
    assert commands.has_store(run, db_url) and not commands.has_store(run)
    if "://" in db_url:
        assert "rlhf-ci" not in out and ":***@" in out  # the CI server's password, masked


def test_eval_reads_and_writes_the_db(tmp_path, db_url):  # noqa: F811
    """Human A/B items, their win rates and the report's agreement section, on --db."""
    assert human_win_rates(tmp_path, db=db_url) == []  # no store yet: nothing, and none made
    assert "Preference collection" in agreement(tmp_path, db_url)
    prompts = [f"question {k}?" for k in range(4)]
    assert send_ab(tmp_path, "sft", "ppo", prompts, ["A"] * 4, ["B"] * 4, db=db_url) == 4
    assert commands.has_store(tmp_path, db_url) and not commands.has_store(tmp_path)
    assert human_win_rates(tmp_path, db=db_url) == []  # items, but no votes yet
    assert "Voting (no active votes yet)" in agreement(tmp_path, db_url)
    assert human_win_rates(tmp_path) == []  # the default store is another one


def test_loop_and_eval_configs_carry_the_db_and_mask_its_password(tmp_path):
    cfg = LoopConfig(run=str(tmp_path), model="m", sft="s", prompts="p", db=PASSWORD_URL)
    configs = stage_configs(cfg)
    assert configs["collect"].db == PASSWORD_URL and configs["eval"].db == PASSWORD_URL
    for written in (to_dict(cfg), to_dict(configs["eval"])):  # loop.json, config.yaml, run cards
        assert written["db"] == "postgresql+psycopg://ann:***@db.example:5432/votes"
    assert "db" not in to_dict(EvalConfig(run="r"))  # the default: fingerprints as before
    msg = waiting_message(Path("runs/x"), 3, {"n_items": 9}, 200,
                          ["loop", "--run", "runs/x", f"--db={PASSWORD_URL}"], PASSWORD_URL)
    assert "hunter2" not in msg
    masked = mask_url(PASSWORD_URL)
    assert masked == "postgresql+psycopg://ann:***@db.example:5432/votes"
    assert f"rlhf collect serve --run runs/x --db '{masked}'" in msg
    assert f"rlhf loop --run runs/x '--db={masked}'" in msg


def test_loop_counts_pairs_in_the_db(tmp_path, db_url):  # noqa: F811
    assert CollectConfig(run="r", n_pairs=1, min_pairs=1).db == ""
    commands.import_items(tmp_path, _items(tmp_path, 5), db=db_url)
    n, stats = count_pairs(tmp_path, 1, db_url)
    assert n == 0 and stats["n_items"] == 5


def _items(tmp_path, n):
    f = tmp_path / "items.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in demo_items(n=n, n_gold=0)))
    return f
