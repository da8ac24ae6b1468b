"""`rlhf loop --rounds 2` on a researcher's own model (a tiny random Qwen2) with people: the loop
stops for votes in round 1, goes on once the annotators have voted in the app (over HTTP, as the
page's Submit posts them), stops again for round 2's items, which are samples of round 1's best
policy against SFT in the same store, and finishes round 2 once those are voted on: the reward
model retrained on both rounds, DPO, PPO and RLOO continued from round 1's adapters, and round
2's eval compared with round 1's."""
import html
import json

import httpx
from gradio_client import Client
from safetensors.torch import load_file
from sqlalchemy import select

from browser import free_port
from test_loop import loop_args, own, rlhf  # noqa: F401 - the module's tiny model and data

PASSWORD = "a long enough password"


def vote_in_app(run, n: int, name: str = "ann") -> list[str]:
    """`n` votes by one annotator through the running app on the run's store; the status line
    the annotator reads after each."""
    from collect.app import build_app, launch
    from collect.app_common import AppConfig
    from collect.commands import store_for
    from collect.users import add_user

    store = store_for(run)
    if name not in {u for u in _users(store)}:
        add_user(store, name, "annotator", PASSWORD)
    app = build_app(store, AppConfig(overlap=1, gold_rate=0.0))
    url = launch(app, store, port=free_port(), prevent_thread_lock=True, quiet=True).rstrip("/")
    shown = []
    try:
        c = Client(url, auth=(name, PASSWORD), verbose=False, analytics_enabled=False, download_files=False)
        handle = c.predict(api_name="/annotate_page")[0]
        with httpx.Client(base_url=url, timeout=20, cookies=c.cookies) as http:
            for _ in range(n):
                r = http.post("/annotate/vote", json={"handle": handle, "choice": "left", "ratings": [4] * 14})
                answer = r.json()
                shown.append(html.unescape(answer["status"]))
                assert r.status_code == 200, shown[-1]
                handle = answer["handle"]
    finally:
        app.close()
        store.close()
    return shown


def _users(store):
    from collect.store import User

    with store.read() as s:
        return list(s.scalars(select(User.name)))


def _items_by_round(run):
    from collect.commands import store_for
    from collect.store import Item

    store = store_for(run)
    try:
        with store.read() as s:
            return [(i.round, i.source_a, i.source_b) for i in s.scalars(select(Item))]
    finally:
        store.close()


def test_two_rounds_with_votes_in_the_app(own, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    args = loop_args(own, run, "--rounds", "2")
    code, out = rlhf(*args)
    assert code == 3 and "waiting for votes" in out, out  # 3: stopped to wait
    shown = vote_in_app(run, 5)
    assert all(s.startswith("Saved") for s in shown), shown

    code, out = rlhf(*args)
    assert code == 3, out  # round 1 done, then waiting for round 2's votes
    for stage in ("collect", "reward", "dpo", "ppo", "rloo", "eval"):
        assert json.loads((run / stage / "inputs.json").read_text())["status"] == "done", stage
    assert "waiting for votes. The annotators' votes on round 2's items give 0" in out
    assert not (run / "rounds" / "2" / "reward").exists()
    items = _items_by_round(run)
    second = [i for i in items if i[0] == 2]
    best = second[0][1]
    assert 5 <= len([i for i in items if i[0] == 1]) <= 16 and 5 <= len(second) <= 16
    assert best in ("dpo", "ppo", "rloo") and {(s[1], s[2]) for s in second} == {(best, "sft")}
    code, report = rlhf("collect", "report", "--run", run, "--overlap", "1")
    assert code == 0 and "round 2" in report, report  # the admin's per-round progress

    # the round-1 item left on ann's page at the end of the first session comes back first, then
    # round 2's items (the newest round's first)
    shown = vote_in_app(run, 6)
    assert all(s.startswith("Saved") for s in shown), shown
    code, out = rlhf(*args)
    assert code == 0, out
    r2 = run / "rounds" / "2"
    for stage in ("collect", "reward", "dpo", "ppo", "rloo", "eval"):
        assert json.loads((r2 / stage / "inputs.json").read_text())["status"] == "done", stage
    # round 2's pairs alone for DPO, every round's for the reward model, each marked with its round
    new = [json.loads(x) for x in (r2 / "collect" / "preferences.jsonl").read_text().splitlines()]
    every = [json.loads(x) for x in (r2 / "collect" / "preferences_all.jsonl").read_text().splitlines()]
    assert [r["round"] for r in new] == [2] * 5 and sorted(r["round"] for r in every) == [1] * 5 + [2] * 5
    trained = sum(len((r2 / "reward" / f).read_text().splitlines()) for f in ("train.jsonl", "val.jsonl"))
    assert trained == 10
    assert json.loads((r2 / "collect" / "metrics.json").read_text())["policy"] == best
    # each algorithm continued from its round-1 adapter: DPO's reference too, PPO's and RLOO's stays SFT
    for alg in ("dpo", "ppo", "rloo"):
        config = (r2 / alg / "config.yaml").read_text()
        start = f"sft: {run / alg}\n" if alg == "dpo" else f"init: {run / alg}\n"
        assert start in config and (alg == "dpo" or "sft: ''" in config), config
        before, after = load_file(run / alg / "adapter_model.safetensors"), load_file(
            r2 / alg / "adapter_model.safetensors")
        assert before.keys() == after.keys() and any(not before[k].equal(after[k]) for k in before)
    metrics = json.loads((r2 / "eval" / "metrics.json").read_text())
    assert set(metrics["policies"]) == {"sft", "dpo", "ppo", "rloo"}
    rounds = metrics["rounds"]
    assert (rounds["round"], rounds["previous"]) == (2, 1)
    assert {(w["policy"], w["judge"]) for w in rounds["win_rates"]} == {
        (a, "reward") for a in ("dpo", "ppo", "rloo")}  # no gold judge for this model
    assert {p["round"] for p in rounds["proxy_vs_gold"]} == {1, 2}
    assert "Round 2 against round 1" in (r2 / "eval" / "report.html").read_text()
    assert f"report: {r2 / 'eval' / 'report.html'}" in out

    code, out = rlhf(*args)
    assert code == 0 and out.count("up to date, skipped") == 13, out
