"""Where the gold gain comes from: a judge's optional `terms` reach the verdicts, eval averages
the policy-minus-SFT difference of each term over the same prompts, and the report shows it."""
import json

import pytest

from eval.gold import decomposition_metrics, fact_changes, gain_decomposition, verdicts
from eval.report import gain_sources, write_report

ASPECTS = ("quality", "relevance", "helpfulness", "harmfulness", "correctness", "realism", "comprehensibility")


class TermJudge:
    """overall = 1 + fact + style: fact 2.0 when the response says "42", style 0.1 when it starts
    with "Hi"."""

    def recognises(self, prompt):
        return True

    def terms(self, prompt, response):
        return {"base": 1.0, "fact": 2.0 * ("42" in response), "style": 0.1 * response.startswith("Hi")}

    def score(self, prompt, response):
        return dict.fromkeys(ASPECTS, 3) | {"overall": sum(TermJudge.terms(self, prompt, response).values())}

    def fact_correct(self, prompt, response):
        return "42" in response

    def is_harmful(self, prompt, response):
        return False

    def is_refusal(self, prompt, response):
        return False


class PlainJudge(TermJudge):
    terms = None  # a judge without the optional method


PROMPTS = ["q1", "q2", "q3", "q4"]
ANSWERS = {  # per prompt: sft, dpo (greedy); sampled: sft, dpo
    "greedy": {"sft": ["42", "no", "Hi no", "no"], "dpo": ["Hi 42", "42", "Hi no", "Hi"]},
    "sampled": {"sft": ["no", "no", "no", "no"], "dpo": ["42", "no", "no", "no"]},
}


def results(judge):
    return {name: {dec: verdicts(judge, PROMPTS, ANSWERS[dec][name]) for dec in ANSWERS}
            for name in ("sft", "dpo")}


def test_verdicts_carry_terms_only_when_the_judge_has_them():
    v = verdicts(TermJudge(), ["q"], ["Hi 42"])
    assert v["terms"] == [{"base": 1.0, "fact": 2.0, "style": 0.1}] and v["overall"] == [pytest.approx(3.1)]
    assert "terms" not in verdicts(PlainJudge(), ["q"], ["Hi 42"])


def test_gain_decomposition_by_hand():
    """Greedy, per prompt dpo - sft: fact (0, +2, 0, 0), style (+0.1, 0, 0, +0.1): means fact 0.5,
    style 0.05, gain 0.55. Sampled: fact (+2, 0, 0, 0): mean 0.5, style 0, gain 0.5."""
    rows = gain_decomposition(results(TermJudge()))
    assert [(r["policy"], r["baseline"], r["decoding"], r["n"]) for r in rows] == [
        ("dpo", "sft", "greedy", 4), ("dpo", "sft", "sampled", 4)]
    greedy, sampled = rows
    assert greedy["terms"] == pytest.approx({"base": 0.0, "fact": 0.5, "style": 0.05})
    assert greedy["gain"] == pytest.approx(0.55)
    assert sampled["terms"] == pytest.approx({"base": 0.0, "fact": 0.5, "style": 0.0}) and sampled["gain"] == 0.5
    assert sum(greedy["terms"].values()) == pytest.approx(greedy["gain"])
    # greedy: q2 fixed ("no" -> "42"); q1 both right, won by "Hi"; q3 tied; q4 both wrong, won by "Hi"
    assert greedy["facts"] == {"fixed": 1, "broken": 0, "same": 3, "same_won": 2, "same_tied": 1, "same_lost": 0}
    assert sampled["facts"] == {"fixed": 1, "broken": 0, "same": 3, "same_won": 0, "same_tied": 3, "same_lost": 0}


def test_fact_changes_count_fixed_broken_and_same_outcomes_by_hand():
    """Prompt by prompt: fixed; broken; no fact to check on one side (left out); both wrong and
    lost by 0.2; both right and tied."""
    a = {"fact_correct": [True, False, None, False, True], "overall": [4.0, 1.5, 2.0, 1.0, 3.8]}
    b = {"fact_correct": [False, True, True, False, True], "overall": [1.5, 4.0, 2.0, 1.2, 3.8]}
    assert fact_changes(a, b) == {"fixed": 1, "broken": 1, "same": 2, "same_won": 0, "same_tied": 1,
                                  "same_lost": 1}
    assert fact_changes(b, a)["same_won"] == 1 and fact_changes(b, a)["same_lost"] == 0


def test_no_decomposition_without_terms_or_baseline():
    assert gain_decomposition(results(PlainJudge())) == [] and decomposition_metrics(results(PlainJudge())) == {}
    no_sft = {"dpo": results(TermJudge())["dpo"]}
    assert gain_decomposition(no_sft) == []
    assert decomposition_metrics(results(TermJudge()))["gold"]["decomposition"][0]["gain"] == pytest.approx(0.55)


def test_demo_oracle_terms_decompose_the_gain_exactly():
    from demo import oracle

    prompts = ["What are your Portland store hours on Monday?", "What's the price of the walnut side table?"]
    sft = ["Our Portland store is open 9am to 7pm on Monday.", "The rattan armchair costs $249."]
    dpo = ["Happy to help! Our Portland store is open 9am to 7pm on Monday. Have a great day!",
           "The walnut side table costs $179."]
    res = {"sft": {"greedy": verdicts(oracle, prompts, sft)}, "dpo": {"greedy": verdicts(oracle, prompts, dpo)}}
    (row,) = gain_decomposition(res)
    assert sum(row["terms"].values()) == pytest.approx(row["gain"], abs=1e-5)
    # the opener and close: (0.07 + 0.03) / 2; the walnut table's price instead of the armchair's:
    # content 3.6 - 1.45 = 2.15 over 2 prompts
    assert row["terms"]["style"] == pytest.approx(0.05) and row["terms"]["content"] == pytest.approx(1.075)


def test_report_shows_where_the_gain_comes_from(tmp_path):
    metrics = {"judges": {"gold": True}, "policies": {}, "win_rates": []} | decomposition_metrics(
        results(TermJudge()))
    html = gain_sources(metrics)
    assert "<h2>Where the gold gain comes from" in html
    assert "<th>gain over sft</th><th>base</th><th>fact</th><th>style</th>" in html
    assert "<td>dpo</td><td>greedy</td><td>4</td><td>0.550</td><td>0.000</td><td>0.500</td><td>0.050</td>" in html
    assert "<h3>Facts fixed and broken</h3>" in html
    assert "<td>dpo</td><td>greedy</td><td>1</td><td>0</td><td>3</td><td>2</td><td>1</td><td>0</td>" in html
    assert gain_sources({"judges": {"gold": True}}) == "" and gain_sources({}) == ""
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(metrics))
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "<td>sampled</td><td>4</td><td>0.500</td>" in page and "section failed" not in page


def test_printed_table_says_which_facts_each_policy_fixed_and_broke():
    from eval.stage import format_table

    metrics = {"policies": {}, "win_rates": []} | decomposition_metrics(results(TermJudge()))
    lines = format_table(metrics).splitlines()
    assert "facts dpo vs sft (greedy): fixed 1, broken 0; same fact on 3: won 2, tied 1, lost 0" in lines
    assert "facts dpo vs sft (sampled): fixed 1, broken 0; same fact on 3: won 0, tied 3, lost 0" in lines
    assert not any(line.startswith("facts") for line in format_table({"policies": {}, "win_rates": []}).splitlines())
