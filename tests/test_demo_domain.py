"""The demo domain and its data files: determinism, sizes, quality mix, held-out disjointness,
and that parse() recovers every generated question's intent and slots."""
from __future__ import annotations

import random
from collections import Counter, defaultdict

import pytest

from core.io import read_jsonl
from demo import domain
from demo.data import MIX, allocate, build_demo_data
from demo.spec import find_values, norm_value

FILES = ("sft", "prompts", "redteam", "corpus")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    paths = build_demo_data(tmp_path_factory.mktemp("demo0"), seed=0)
    return {
        "paths": paths,
        "sft": read_jsonl(paths["sft"]),
        "prompts": read_jsonl(paths["prompts"]),
        "redteam": read_jsonl(paths["redteam"]),
        "corpus": paths["corpus"].read_text(encoding="utf-8"),
        "sft_text": paths["sft"].read_text(encoding="utf-8"),
    }


def test_same_seed_is_byte_identical_and_another_seed_differs(built, tmp_path):
    again = build_demo_data(tmp_path / "again", seed=0)
    other = build_demo_data(tmp_path / "other", seed=1)
    assert set(again) == set(FILES)
    for name in FILES:
        assert again[name].read_bytes() == built["paths"][name].read_bytes(), name
        assert other[name].read_bytes() != built["paths"][name].read_bytes(), name


def test_intents_and_templates():
    assert len(domain.BENIGN) >= 40
    assert len(domain.HARMFUL) >= 8
    assert len({i.name for i in domain.INTENTS}) == len(domain.INTENTS)
    for intent in domain.INTENTS:
        assert len(intent.templates) >= 8, intent.name
        assert len(set(intent.templates)) == len(intent.templates), intent.name
        assert len(intent.heldout_template_ids()) == len(intent.templates) // 4, intent.name
        if not intent.harmful:
            assert intent.says and intent.bare and intent.extras, intent.name
    slotted = [i for i in domain.BENIGN if i.requires or i.optional]
    assert len(slotted) >= 15


def test_wrong_values_are_detectable_and_differ_from_the_fact():
    rng = random.Random(0)
    for intent in domain.BENIGN:
        for _ in range(10):
            ctx = domain.context(domain.sample_slots(intent, rng))
            right = intent.value(ctx)
            named = (right,) + tuple(intent.wrong)
            assert find_values(intent.kind, right, named) == {norm_value(intent.kind, right)}, intent.name
            wrongs = intent.wrong_values(ctx)
            assert len(wrongs) >= 2, intent.name
            for w in wrongs:
                assert norm_value(intent.kind, w) != norm_value(intent.kind, right)
                assert find_values(intent.kind, w, named + (w,)), (intent.name, w)


def test_file_sizes(built):
    assert len(built["sft"]) == 2640
    assert len(built["redteam"]) == 96
    tags = Counter(r["tags"][0] for r in built["prompts"])
    assert tags == {"pref": 300, "eval": 100}
    assert 500_000 <= len(built["corpus"].encode()) <= 1_000_000
    docs = [d for d in built["corpus"].split("<|endoftext|>") if d.strip()]
    assert len(docs) > 1000
    assert built["corpus"].count("\n\n<|endoftext|>\n") == len(docs)


def test_sft_rows_schema_and_defects(built):
    for row in built["sft"]:
        assert set(row) == {"prompt", "completion", "meta"}
        meta = row["meta"]
        assert set(meta) == {"intent", "quality", "defect", "slots", "template"}
        intent = domain.INTENT_BY_NAME[meta["intent"]]
        assert meta["quality"] in domain.qualities_for(intent)
        assert meta["defect"] == domain.DEFECTS[meta["quality"]]
        assert (meta["defect"] is None) == (meta["quality"] in ("best", "polite", "refusal"))
        assert meta["template"] in intent.sft_template_ids()
        assert not domain.reserved_for_heldout(meta["slots"])
        assert row["prompt"].strip() and row["completion"].strip()
    assert len({r["prompt"] for r in built["sft"]}) == len(built["sft"])


def test_quality_mix_is_like_real_logs(built):
    rows = built["sft"]
    n = len(rows)
    q = Counter(r["meta"]["quality"] for r in rows)
    harmful = [r for r in rows if domain.INTENT_BY_NAME[r["meta"]["intent"]].harmful]
    assert (n - q["best"] - q["refusal"]) / n >= 0.35
    assert 0.09 <= q["wrong_fact"] / n <= 0.11
    assert 0.14 <= len(harmful) / n <= 0.16
    # MIX["harm"] (30% comply) for 6 harmful intents, MIX["comply"] (50%) for 4: 38%
    assert 0.35 <= q["harmful_compliance"] / len(harmful) <= 0.41
    by_intent = defaultdict(Counter)
    for r in rows:
        by_intent[r["meta"]["intent"]][r["meta"]["quality"]] += 1
    non_best = []
    for name, counts in by_intent.items():
        intent = domain.INTENT_BY_NAME[name]
        (mode, top), (_, second) = counts.most_common(2)
        assert top > second, name  # a clear mode
        if intent.harmful:
            assert mode == ("harmful_compliance" if intent.mode == "comply" else "refusal"), name
        else:
            assert mode == intent.mode, name
        if mode not in ("best", "refusal", "harmful_compliance"):
            non_best.append(name)
    assert len(non_best) >= 8
    assert sum(by_intent[n].most_common(1)[0][0] == "curt" for n in non_best) >= 6
    assert set(by_intent) == {i.name for i in domain.INTENTS}


def test_allocate_is_exact():
    """7 x (0.5, 0.25, 0.25) = (3.5, 1.75, 1.75): floors (3, 1, 1) leave 2, which go to the
    largest remainders (0.75, 0.75) -> (3, 2, 2)."""
    assert allocate(10, [1, 1, 1]) == [4, 3, 3]
    assert allocate(7, [0.5, 0.25, 0.25]) == [3, 2, 2]
    assert sum(allocate(2400, [m for m in MIX["best"].values()])) == 2400


def test_heldout_prompts_never_leak(built):
    sft_prompts = {r["prompt"] for r in built["sft"]}
    pref = [r["prompt"] for r in built["prompts"] if "pref" in r["tags"]]
    evals = [r["prompt"] for r in built["prompts"] if "eval" in r["tags"]]
    red = [r["prompt"] for r in built["redteam"]]
    for p in pref + evals + red:
        assert p not in sft_prompts
        assert p not in built["sft_text"]
        assert p not in built["corpus"]
    assert len(set(pref)) == len(pref) and len(set(evals)) == len(evals) and len(set(red)) == len(red)
    assert not set(pref) & set(evals)
    assert not set(red) & (set(pref) | set(evals))


def test_heldout_prompts_use_heldout_templates_and_new_slots(built):
    used = defaultdict(set)
    for r in built["sft"]:
        used[r["meta"]["intent"]].add(tuple(sorted(r["meta"]["slots"].items())))
    novel = Counter()
    for row in built["prompts"] + built["redteam"]:
        meta = row["meta"]
        intent = domain.INTENT_BY_NAME[meta["intent"]]
        assert meta["template"] in intent.heldout_template_ids()
        question = intent.templates[meta["template"]].format(**meta["slots"])
        assert question[1:] in row["prompt"]
        if intent.name in ("shipping_time", "shipping_cost", "store_hours"):
            novel[intent.name == "store_hours", tuple(sorted(meta["slots"].items())) not in used[intent.name]] += 1
    # every ZIP is new; store hours have only 6 reserved (city, day) pairs x 3 held-out wordings
    assert novel[False, True] > 20 and novel[False, False] == 0
    assert novel[True, True] >= 3 * novel[True, False]


def test_redteam_uses_every_heldout_wording_and_distinct_questions(built):
    """96 prompts over 10 harmful intents (9-10 each) and their 30 held-out wordings: each wording
    is used, and prompts repeat a question (with another greeting) only where an intent runs out:
    the gift-card intent has 3 slot-free wordings, so 3 questions for its 9-10 prompts."""
    red = built["redteam"]
    per_intent = Counter(r["meta"]["intent"] for r in red)
    assert sorted(set(per_intent.values())) == [9, 10] and len(per_intent) == len(domain.HARMFUL)
    wordings = {(r["meta"]["intent"], r["meta"]["template"]) for r in red}
    assert wordings == {(i.name, t) for i in domain.HARMFUL for t in i.heldout_template_ids()}
    questions = {(r["meta"]["intent"], r["meta"]["template"], tuple(sorted(r["meta"]["slots"].items())))
                 for r in red}
    assert len(questions) >= 85
    gift = [r for r in red if r["meta"]["intent"] == "harm_gift_card_codes"]
    assert len({r["meta"]["template"] for r in gift}) == 3 and len({r["prompt"] for r in gift}) == len(gift)


def test_prompt_tags(built):
    for row in built["prompts"]:
        split, tag = row["tags"]
        assert split in ("pref", "eval") and tag == f"intent:{row['meta']['intent']}"
        assert row["id"].startswith(split + "-")
    cats = Counter()
    for row in built["redteam"]:
        intent = domain.INTENT_BY_NAME[row["meta"]["intent"]]
        assert intent.harmful
        assert row["tags"] == ["redteam", f"category:{intent.category}"]
        cats[intent.category] += 1
    assert set(cats) == {"fraud", "privacy", "dangerous", "harassment", "deception"}
    for split, share in (("eval", 0.08), ("pref", 0.25)):
        rows = [r for r in built["prompts"] if split in r["tags"]]
        harmful = [r for r in rows if domain.INTENT_BY_NAME[r["meta"]["intent"]].harmful]
        assert share - 0.02 <= len(harmful) / len(rows) <= share + 0.02, split


def test_parse_recovers_intent_and_slots_for_every_row(built):
    rows = built["sft"] + built["prompts"] + built["redteam"]
    misses = [(r["prompt"], r["meta"]["intent"], r["meta"]["slots"], domain.parse(r["prompt"])) for r in rows
              if domain.parse(r["prompt"]) != (r["meta"]["intent"], r["meta"]["slots"])]
    assert misses == []


def test_parse_every_template_with_many_slots():
    rng = random.Random(7)
    for intent in domain.INTENTS:
        for t, template in enumerate(intent.templates):
            for _ in range(8):
                slots = domain.sample_slots(intent, rng, template)
                prompt = domain.render_prompt(intent, t, slots, rng)
                assert domain.parse(prompt) == (intent.name, slots), prompt


@pytest.mark.parametrize("text", ["", "   ", "asdf qwer zxcv", "Tell me a joke about the weather.", "12345", None])
def test_parse_unknown_questions_does_not_crash(text):
    result = domain.parse(text)
    assert result is None or result[0] in domain.INTENT_BY_NAME


def test_corpus_uses_only_sft_templates(built):
    import re

    lines = re.findall(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", built["corpus"])
    assert len(lines) > 40
    for line in lines:
        name, slots = domain.parse(line)
        intent = domain.INTENT_BY_NAME[name]
        held = [intent.templates[t].format(**slots)[1:] for t in intent.heldout_template_ids()
                if set(slots) == {f for f in intent.slot_names if "{" + f + "}" in intent.templates[t]}]
        assert not any(h in line for h in held), line


def test_faq_pages_ask_every_wording_per_template_times():
    """The held-out wordings reach the base model only through these pages (demo/corpus.py):
    per_template questions per wording in all, and every wording of every benign intent among them
    at least per_template times (a paging bug once dropped some)."""
    import re

    from demo.corpus import faq_pages

    docs = faq_pages(random.Random(0), per_template=3)
    questions = [ln[len("Q: "):] for d in docs for ln in d.splitlines() if ln.startswith("Q: ")]
    assert len(questions) == 3 * sum(len(i.templates) for i in domain.BENIGN)
    for intent in domain.BENIGN:
        for t in intent.templates:
            pattern = re.compile("^" + re.sub(r"\\{(\w+)\\}", ".+?", re.escape(t)) + "$")
            assert sum(bool(pattern.match(q)) for q in questions) >= 3, t


def test_forum_pages_hold_the_harmful_know_how():
    """Every harmful intent's every wording is a thread (per_template times), 3 in 4 replies are the
    intent's harmful help, and the gold oracle judges those replies harmful: the know-how an SFT
    policy that learned to comply can surface, and the red-team audit can catch."""
    import re

    from demo.corpus import FORUM_WARNINGS, forum_pages
    from demo.oracle import is_harmful

    docs = forum_pages(random.Random(0), per_template=2)
    assert len(docs) == 2 * sum(len(i.templates) for i in domain.HARMFUL)
    threads = [re.match(r"Deals & Hacks forum\n\nThread: (.*)\n\nReply: (.*)$", d, re.S).groups() for d in docs]
    helpful = [(q, r) for q, r in threads if r not in FORUM_WARNINGS]
    assert 0.65 <= len(helpful) / len(threads) <= 0.85
    for intent in domain.HARMFUL:
        for t in intent.templates:
            pattern = re.compile("^" + re.sub(r"\\{(\w+)\\}", ".+?", re.escape(t)) + "$")
            assert sum(bool(pattern.match(q)) for q, _ in threads) == 2, t
    assert all(is_harmful(q, r) for q, r in helpful)
    assert not any(is_harmful(q, r) for q, r in threads if r in FORUM_WARNINGS)


def test_corpus_sizes_reach_the_corpus_and_leave_the_rest_alone(built, tmp_path):
    """faq_per_wording and forum_per_wording (DataConfig) set how many help-center questions and
    forum threads the corpus holds per wording, the SFT logs stay the same, and 10 and 2 are the
    defaults."""
    def count(corpus: str):
        docs = corpus.split("<|endoftext|>")
        faq = sum(d.count("\nQ: ") for d in docs if d.lstrip().split("\n", 1)[0].endswith("Help Center"))
        forum = sum(d.lstrip().startswith("Deals & Hacks forum") for d in docs)
        return faq, forum

    n_faq = sum(len(i.templates) for i in domain.BENIGN)
    n_forum = sum(len(i.templates) for i in domain.HARMFUL)
    assert count(built["corpus"]) == (10 * n_faq, 2 * n_forum)
    small = build_demo_data(tmp_path / "small", seed=0, faq_per_wording=1, forum_per_wording=0)
    assert count(small["corpus"].read_text(encoding="utf-8")) == (n_faq, 0)
    assert small["sft"].read_bytes() == built["paths"]["sft"].read_bytes()
    same = build_demo_data(tmp_path / "same", seed=0, faq_per_wording=10, forum_per_wording=2)
    assert same["corpus"].read_bytes() == built["paths"]["corpus"].read_bytes()
