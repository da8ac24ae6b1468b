"""eval/report.py: one self-contained HTML file, untrusted text escaped, partial runs fine."""
import base64
import html
import json
import re

from eval.report import write_report
from report_fixtures import XSS, make_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def images(page: str) -> list[bytes]:
    """The decoded PNG of every <img>; fails on any src that is not an inline base64 PNG."""
    srcs = re.findall(r"<img\b[^>]*>", page)
    out = []
    for tag in srcs:
        m = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', tag)
        assert m, f"image is not an inline PNG: {tag[:120]}"
        out.append(base64.b64decode(m.group(1), validate=True))
    return out


def test_full_report(tmp_path):
    run = make_run(tmp_path)
    path = write_report(run)
    assert path == run / "eval" / "report.html"
    page = path.read_text(encoding="utf-8")

    # One file: every image inline and a real PNG; nothing loaded from elsewhere, no script.
    pngs = images(page)
    assert len(pngs) == 6  # win rates, RM vs gold, curves of sft, reward, dpo, ppo
    assert all(p.startswith(PNG_MAGIC) and len(p) > 1000 for p in pngs)
    tags = re.findall(r"<[a-zA-Z][^>]*>", page)
    assert not [t for t in tags if re.match(r"<(script|link|iframe|object|embed)\b", t, re.I)
                or re.search(r"\son\w+\s*=|https?:|url\(", t, re.I)]

    # Untrusted prompts, responses and categories arrive as text.
    assert "<script>alert" not in page and "<img src=x" not in page
    assert html.escape(XSS) in page

    # Numbers: win rates with intervals, NaN and null as n/a.
    assert "0.613" in page and "[0.538, 0.688]" in page and "[0.772, 0.903]" in page
    # beside it the style-controlled rate, its interval and the judge's style coefficients; an
    # entry without them (a metrics.json written before style control) shows n/a
    assert ("<td>0.613</td><td>[0.538, 0.688]</td><td>0.521</td><td>[0.447, 0.598]</td>"
            "<td>1.234</td><td>-0.567</td><td>2.468</td><td>n/a</td>") in page
    assert "<td>0.842</td><td>[0.772, 0.903]</td><td>n/a</td><td>[n/a, n/a]</td><td>n/a</td>" in page
    assert ("on 61% [54%, 69%] of 100 prompts (58 won, 7 tied, 35 lost) (gold judge, greedy); style-controlled "
            "52% [45%, 60%]") in page
    assert "<td>-0.375</td><td>[-0.52, -0.23]</td>" in page  # harmful rate minus SFT's, paired interval
    # red-team: sampled rates with their intervals over prompts, refusals vs SFT over 48 prompts x 4 answers
    assert ("<td>ppo</td><td>0.060</td><td>0.188 [0.00, 0.38]</td><td>0.100</td><td>0.438 [0.31, 0.56]</td>"
            "<td>0.250</td><td>0.375 [0.25, 0.50]</td>") in page  # then the evasive answers'
    # the reward model's order of refusals and evasive answers on the same prompts
    assert "<td>refusal</td><td>evasive</td><td>0.200</td><td>120</td>" in page
    assert "<td>0.250</td><td>[0.15, 0.35]</td><td>48 x 4</td>" in page
    assert "AUC 0.812 (40 harmful, 300 refusals" in page and "4 times sampled" in page
    # the reward stage's own held-out pairs: accuracy, and its taste for length beside gold's
    assert ("Held-out pairs of the reward stage: accuracy 0.812 against the annotators' majority, 0.859 "
            "against the gold judge on 64 pairs it decides; reward-length correlation 0.06 (the gold "
            "judge's: 0.17).") in html.unescape(page)
    # held-out refusals per policy and decoding (dpo's k = 2), and what decided them
    assert "<th>refusals</th>" in page and "<td>0.800</td><td>0.140</td><td>0.100</td><td>n/a</td>" in page
    assert "the share of held-out answers that refuse (by the gold judge)" in page
    assert "n/a" in page and not re.search(r"\bnan\b", page, re.I)
    for section in ("Headline", "Win rates", "Policies", "Reward model vs gold", "Safety",
                    "Annotator agreement", "Training curves", "Sample outputs"):
        assert f"<h2>{section}" in page
    assert "fleiss_kappa" in page and "Landis-Koch" in page  # from the annotation store
    assert "not run" not in page and "section failed" not in page


def test_partial_run(tmp_path):
    """Only eval/metrics.json (base and sft) and the SFT log: the rest says "not run"."""
    run = make_run(tmp_path, full=False)
    page = write_report(run).read_text(encoding="utf-8")
    assert len(images(page)) == 1  # the SFT curves
    assert "section failed" not in page
    assert page.count("not run") >= 4  # win rates, RM vs gold, agreement, samples
    assert not (run / "collect").exists()  # looking for the store did not create it
    assert "Held-out pairs of the reward stage" not in page  # no reward/metrics.json


def test_broken_inputs_spoil_only_their_section(tmp_path, capsys):
    run = make_run(tmp_path, full=False)
    with open(run / "sft" / "log.jsonl", "a") as f:
        f.write('{"step": 45, "loss": 1.')  # a run killed mid-write
    m = json.loads((run / "eval" / "metrics.json").read_text())
    m["policies"]["sft"]["greedy"] = "garbage"
    m["win_rates"] = [{"a": "sft", "b": "base", "win_rate": "0.7?", "n": 3}]
    (run / "eval" / "metrics.json").write_text(json.dumps(m))
    page = write_report(run).read_text(encoding="utf-8")
    assert len(images(page)) == 1  # the SFT curves, without the half line
    assert "section failed" not in page  # a string where a number belongs is shown as text

    m["policies"] = ["not", "a", "dict"]  # breaks every section built from the policies
    (run / "eval" / "metrics.json").write_text(json.dumps(m))
    page = write_report(run).read_text(encoding="utf-8")
    assert "section failed: AttributeError" in page
    assert "Traceback" in capsys.readouterr().err  # and the traceback goes to the log
    assert len(images(page)) == 1 and "<h2>Training curves" in page


def test_a_run_without_gold_leads_with_the_reward_model_and_people_and_says_why():
    from eval.report import headline
    from eval.stage import format_table, no_gold_reason

    reason = no_gold_reason(judge_given=False)
    greedy = {"rm_score": 0.42, "eos_rate": 0.9, "mean_length": 31.0}
    m = {"n_prompts": 20, "n_redteam": 0, "serving_temperature": 0.7,
         "judges": {"gold": False, "reward": True, "human": True, "no_gold_because": reason},
         "policies": {"sft": {"greedy": greedy}, "dpo": {"greedy": {**greedy, "rm_score": 0.61}}},
         "win_rates": [{"a": "dpo", "b": "sft", "judge": "reward", "decoding": "greedy", "win_rate": 0.7,
                        "ci_low": 0.5, "ci_high": 0.85, "n": 20},
                       {"a": "dpo", "b": "sft", "judge": "human", "decoding": "sampled", "win_rate": 0.6,
                        "ci_low": 0.4, "ci_high": 0.8, "n": 12}]}
    page = html.unescape(headline(m))
    assert f"{reason}." in page and "gold overall" not in page
    assert "dpo<b>0.61</b>reward-model score · EOS 90% · length 31.0" in page
    assert page.index("(human judge, sampled)") < page.index("(reward judge, greedy)")  # people first
    assert "style-controlled" not in page  # entries written before style control: no empty clause
    assert f"gold, fact and harmful columns n/a: {reason}" in format_table(m)
    with_gold = headline({**m, "judges": {"gold": True}})
    assert "gold overall" in with_gold and "(human judge" in with_gold


def test_printed_table_has_the_red_team_audit():
    from eval.stage import format_table
    from report_fixtures import metrics

    lines = format_table(metrics()).splitlines()
    assert ("red-team audit, 48 prompts: greedy and 4 sampled answers per prompt (95% intervals resample prompts)"
            in lines)
    assert ("  ppo     greedy harmful 0.060, refusal 0.100, evasive 0.250; sampled harmful 0.188 [0.000, 0.375], "
            "refusal 0.438 [0.312, 0.562], evasive 0.375 [0.250, 0.500]") in lines
    assert "reward model on same-prompt red-team answers: refusal above evasive 0.200 of 120 pairs" in lines
    assert ("refusal rate ppo - sft (sampled): 0.688 - 0.438 = +0.250 [+0.146, +0.354] over 48 red-team prompts "
            "x 4 samples") in lines
    assert ("harmful rate dpo - sft (greedy): 0.125 - 0.500 = -0.375 [-0.521, -0.229] over 48 red-team prompts"
            in lines)
    assert ("reward model's harmfulness head: AUC 0.812 for harmful help (40) vs refusals (300) among the audited "
            "answers") in lines


def test_sweep_section_shows_what_was_searched_the_best_against_the_baseline_and_the_pruned(tmp_path, capsys):
    """A sweep's trials.json as `rlhf sweep` writes it (sweep/results.py, from an Optuna study)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    from core.config import DPOConfig
    from sweep.objective import METRICS
    from sweep.results import write_results
    from sweep.space import Param

    run = make_run(tmp_path, full=False)
    where = run / "sweeps" / "dpo" / "lr"
    where.mkdir(parents=True)
    dist = {"learning_rate": FloatDistribution(1e-5, 1e-3, log=True), "lr_scheduler": CategoricalDistribution(
        ["cosine", XSS])}
    study = optuna.create_study(direction="minimize")
    for params, state, value, curve, seconds in [
            ({"learning_rate": 1e-4, "lr_scheduler": "cosine"}, TrialState.COMPLETE, 0.70, {10: 0.69, 20: 0.70}, 20.0),
            ({"learning_rate": 3e-4, "lr_scheduler": XSS}, TrialState.COMPLETE, 0.60, {10: 0.65, 20: 0.60}, 21.0),
            ({"learning_rate": 1e-5, "lr_scheduler": "cosine"}, TrialState.PRUNED, None, {10: 0.693}, 9.0)]:
        study.add_trial(create_trial(params=params, distributions=dist, state=state, value=value,
                                     intermediate_values=curve, user_attrs={"seconds": seconds}))
    space = [Param("learning_rate", "log_uniform", 1e-5, 1e-3), Param("lr_scheduler", "choice", choices=("cosine", XSS))]
    base = DPOConfig(learning_rate=1e-4)
    summary = write_results(study, where, "dpo", base, space, METRICS["dpo"]["val_loss"], {})
    printed = capsys.readouterr().out  # the table at the end of a sweep
    assert re.search(r"^ +2 pruned +0\.6930 \(last\) +9 +1e-05 +cosine$", printed, re.M), printed
    assert re.search(r"^ +1 complete +0\.6000 +21 +0\.0003 +.+ \*$", printed, re.M), printed
    assert summary["baseline"]["number"] == 0 and summary["best"]["number"] == 1
    page = write_report(run).read_text(encoding="utf-8")
    assert "<h2>Hyperparameter sweeps</h2>" in page
    assert ("Trials: 2 complete, 1 pruned, 50 s in all, of which pruned trials 9 s. Best: trial 1, 0.6000; the "
            "starting config's values (trial 0): 0.7000.") in page
    assert "<td>2</td><td>pruned</td><td>0.6930</td><td>9</td><td>1e-05</td><td>cosine</td>" in page
    assert html.escape(XSS) in page and "<script>alert" not in page
    assert len(images(page)) == 2  # the SFT curves and the sweep's panels


def test_the_report_says_why_a_section_is_empty_and_counts_ties():
    """Without a gold judge or a red-team file, the empty sections name what is missing, not
    "not run"; a rate made of ties says so."""
    from eval.report import headline, over_optimization, side_by_side

    samples = [{"policy": p, "set": "heldout", "decoding": "greedy", "prompt": "q", "response": "",
                "rm_score": 0.1, "overall": None} for p in ("sft", "dpo")]
    page = html.unescape(over_optimization(samples))
    assert "there is no gold judge to compare the reward model with" in page and "not run" not in page
    page = html.unescape(side_by_side(samples, "redteam"))
    assert "No red-team prompts: pass <code>--redteam FILE</code>" in page and "not run" not in page
    m = {"n_prompts": 3, "n_redteam": 0, "judges": {"gold": False},
         "win_rates": [{"a": "dpo", "b": "sft", "judge": "reward", "decoding": "greedy", "win_rate": 0.5,
                        "ci_low": 0.5, "ci_high": 0.5, "n": 3, "wins": 0, "ties": 3, "losses": 0}]}
    assert "of 3 prompts (0 won, 3 tied, 0 lost) (reward judge, greedy)" in html.unescape(headline(m))
