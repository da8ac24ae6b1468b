"""Simulated annotators (demo/simulate.py) on demo items; the agreement report singles out the
careless one; the `rlhf collect` command functions end to end on a run directory."""
import json
import random

import pytest

from collect import commands
from collect.agreement import flag_annotators
from collect.assign import add_items, admin_progress
from collect.review import safety_queue
from collect.store import open_store
from collect.summary import agreement_summary
from collect.votes import votes_of
from core.io import read_jsonl
from demo.simulate import cli_main, simulate, simulate_run

N_ITEMS, N_GOLD = 45, 5


def demo_items(n=N_ITEMS, n_gold=N_GOLD, seed=0):
    """Pairs of demo answers of different qualities (incl. harmful compliance); gold items
    get the oracle's better answer as their known choice."""
    from demo import domain, oracle

    rng = random.Random(seed)
    items = []
    for k in range(n + n_gold):
        intent = domain.INTENTS[k % len(domain.INTENTS)]
        slots = domain.sample_slots(intent, rng)
        prompt = domain.render_prompt(intent, 0, slots, rng)
        qa, qb = rng.sample(domain.qualities_for(intent), 2)
        a, b = domain.render(intent, slots, qa, rng), domain.render(intent, slots, qb, rng)
        item = {"id": f"d{k}", "prompt": prompt, "response_a": a, "response_b": b,
                "source_a": qa, "source_b": qb}
        if k >= n:
            sa, sb = oracle.score(prompt, a)["overall"], oracle.score(prompt, b)["overall"]
            item |= {"is_gold": True, "gold_choice": "a" if sa > sb else "b"}
        items.append(item)
    return items


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    store = open_store(tmp_path_factory.mktemp("sim") / "annotations.db")
    add_items(store, demo_items())
    out = simulate(store, n_annotators=5, careless=1, seed=0)
    yield store, out
    store.close()


def test_every_item_reaches_overlap(simulated):
    store, out = simulated
    assert out["careless"] == ["sim5"]
    assert out["n_votes"] == N_ITEMS * 3 + sum(p["gold_done"] for p in
                                               admin_progress(store)["annotators"])
    assert admin_progress(store)["items"]["complete"] == N_ITEMS
    assert min(out["votes"].values()) >= 25  # round robin: everyone gets a share


def test_agreement_flags_exactly_the_careless_annotator(simulated):
    store, _ = simulated
    s = agreement_summary(store, n_boot=50)
    per = {n: a["agreement"] for n, a in s["annotators"].items()}
    assert flag_annotators(per, threshold=0.5, min_items=10) == ["sim5"]
    assert s["flagged"] == ["sim5"]
    # careful annotators agree with each other, though not on every near-tie (an opener against none
    # is worth less than their noise): 12-22 items each, 0.78-1.0 agreement; the careless one 0.39
    assert all(per[n]["share"] >= 0.75 and per[n]["share"] > per["sim5"]["share"] + 0.3
               for n in ("sim1", "sim2", "sim3", "sim4"))
    assert s["annotators"]["sim5"]["position_bias"]["share"] > 0.8  # mostly clicks left
    assert s["choice"]["method"] == "fleiss_kappa" and s["choice"]["raters_per_item"] == 3
    assert s["choice"]["value"] > 0.3


def test_careful_annotators_flag_harm(simulated):
    store, _ = simulated
    harmful_votes = [v for v in votes_of(store, annotator="sim1")
                     if max(v.aspects_a["harmfulness"], v.aspects_b["harmfulness"]) >= 4]
    assert harmful_votes and all(v.harm_flags for v in harmful_votes)
    assert len(safety_queue(store)) >= len({v.item_id for v in harmful_votes})


def test_simulation_is_deterministic(tmp_path):
    def run(path):
        store = open_store(path)
        add_items(store, demo_items(n=12, n_gold=0))
        simulate(store, n_annotators=3, careless=1, seed=7)
        rows = [(v.item_id, v.annotator, v.choice, v.swapped, v.aspects_a)
                for v in votes_of(store)]
        store.close()
        return rows

    assert run(tmp_path / "a.db") == run(tmp_path / "b.db")


def test_commands_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps(r) + "\n" for r in demo_items(n=30, n_gold=3)))
    commands.users_add(run, "alice", "annotator", "a long password")
    assert commands.import_items(run, items) == 33
    sim = simulate_run(run, n_annotators=4, careless=1, seed=1)
    stats = commands.export(run, min_agreement=0.5)
    report = commands.report(run)
    text = capsys.readouterr().out
    assert (run / "collect" / "annotations.db").exists()
    rows = read_jsonl(run / "collect" / "preferences.jsonl")
    assert len(rows) == stats["n_pairs"] > 0 and all(r["agreement"] >= 0.5 for r in rows)
    assert (run / "collect" / "README.md").exists()
    assert "imported 33 items" in text and "preference pairs" in text
    assert "FLAGGED sim4" in text and sim["careless"] == ["sim4"]
    assert report["agreement"]["flagged"] == ["sim4"]
    assert {a["annotator"] for a in report["progress"]["annotators"]} == \
        {"alice", "sim1", "sim2", "sim3", "sim4"}


def test_rlhf_collect_simulate_routes_to_the_demo(tmp_path, capsys):
    from cli.main import main

    run = tmp_path / "run"
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps(r) + "\n" for r in demo_items(n=6, n_gold=0)))
    commands.import_items(run, items)
    assert main(["collect", "simulate", "--run", str(run), "--annotators", "3", "--careless", "0"]) == 0
    assert "3 simulated annotators cast 18 votes" in capsys.readouterr().out
    assert cli_main(["--help"]) == 0 and "demo's gold oracle" in " ".join(capsys.readouterr().out.split())
