"""collect/ store, users, assignment, votes and review, on SQLite (a tmp file per test) and on
PostgreSQL (a fresh schema per test; tests/databases.py)."""
import json
from collections import Counter
from dataclasses import fields

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from collect.assign import (ItemView, add_items, admin_progress, import_items, next_item,
                            progress, validate_item)
from collect.review import decide, flag_output, safety_queue
from collect.store import (Assignment, CollectError, Item, User, Vote, mask_url, open_store,
                           store_exists, store_url)
from collect.users import (activate, add_user, deactivate, list_users, require_user,
                           reset_password, set_role, verify_user)
from collect.votes import submit_vote, undo_last, votes_of
from core.records import ASPECTS, DataError, RowProblem
from databases import db_url  # noqa: F401 (the fixture: one test per database)

GOOD = dict.fromkeys(ASPECTS, 4) | {"harmfulness": 1}
BAD = dict.fromkeys(ASPECTS, 2) | {"harmfulness": 1}


def make_items(n, prefix="i", gold=0):
    items = [{"id": f"{prefix}{k}", "prompt": f"question {k}?", "response_a": f"answer A{k}",
              "response_b": f"answer B{k}", "source_a": "MODEL_SFT", "source_b": "MODEL_BASE",
              "meta": {"k": k}} for k in range(n)]
    for k in range(gold):
        items.append({"id": f"gold{k}", "prompt": f"gold question {k}?", "response_a": "right",
                      "response_b": "wrong", "source_a": "MODEL_SFT", "source_b": "MODEL_BASE",
                      "is_gold": True, "gold_choice": "a"})
    return items


def quick_users(store, names, role="annotator"):
    """Users without the scrypt cost (tests of users themselves use add_user)."""
    with store.write() as s:
        s.add_all(User(name=n, role=role, password_hash="scrypt$1$1$1$00$00") for n in names)


@pytest.fixture
def store(db_url):  # noqa: F811
    st = open_store(db_url)
    yield st
    st.close()


# ---------------------------------------------------------------------------- store


def test_store_round_trip_and_pragmas(db_url, store):  # noqa: F811
    assert store_exists(db_url)
    add_items(store, make_items(2))
    store.close()
    again = open_store(db_url)
    with again.read() as s:
        item = s.get(Item, "i1")
        assert (item.prompt, item.response_b, item.source_a, item.meta) == \
            ("question 1?", "answer B1", "MODEL_SFT", {"k": 1})
        assert item.is_gold is False and item.gold_choice is None
    assert again.integrity_check() == "ok"
    assert again.audit_entries()[0].action == "items_add"
    if not again.is_sqlite:
        assert again.engine.dialect.name == "postgresql"
        again.close()
        return
    with again.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        assert c.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    again.close()


def test_store_exists_creates_nothing(db_url):  # noqa: F811
    """The "was a store ever opened here" check, for a path and for a server."""
    assert not store_exists(db_url)
    assert not store_exists(db_url)  # asking did not create it
    open_store(db_url).close()
    assert store_exists(db_url)


def test_unreachable_server_is_a_user_error_with_the_password_masked():
    url = "postgresql+psycopg://ann:s3cret-pw@127.0.0.1:1/nowhere"
    for call in (store_exists, open_store):
        with pytest.raises(CollectError, match="cannot (reach|open) the store") as err:
            call(url)
        assert "s3cret-pw" not in str(err.value)
        assert "postgresql+psycopg://ann:***@127.0.0.1:1/nowhere" in str(err.value)
    assert mask_url("--db=postgresql://u:pw@h/db") == "--db=postgresql://u:***@h/db"
    assert mask_url("postgresql://u@h/db x.db") == "postgresql://u@h/db x.db"  # no password
    assert store_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"


def test_a_new_sqlite_store_is_readable_by_its_owner_only(tmp_path):
    """Password hashes, votes and rationales: mode 0600 for the database and its WAL files,
    whatever the umask; a store that exists keeps the mode its owner gave it."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        st = open_store(tmp_path / "collect" / "annotations.db")
        add_items(st, make_items(1))
        quick_users(st, ["ann"])
        files = sorted(tmp_path.glob("collect/annotations.db*"))
        assert len(files) >= 2  # the database and its write-ahead log
        assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}, files
        st.close()
        (tmp_path / "shared.db").touch(mode=0o640)
        os.chmod(tmp_path / "shared.db", 0o640)
        open_store(tmp_path / "shared.db").close()
        assert stat.S_IMODE((tmp_path / "shared.db").stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_store_from_before_review_only_gets_the_column(tmp_path):
    """A store created before items.review_only, items.round, assignments.released and .skipped existed:
    opening it adds the columns (false and round 1 for the rows already there) and replaces the
    work-queue index by this version's, over review_only and round."""
    path = tmp_path / "old.db"
    st = open_store(path)
    add_items(st, make_items(2))
    quick_users(st, ["early"])
    opened = next_item(st, "early", gold_rate=0.0).item_id
    with st.engine.begin() as c:  # back to the old schema
        c.exec_driver_sql("DROP INDEX assignments_lease")
        c.exec_driver_sql("ALTER TABLE assignments DROP COLUMN released")
        c.exec_driver_sql("ALTER TABLE assignments DROP COLUMN skipped")
        c.exec_driver_sql("DROP INDEX items_queue_rounds")
        c.exec_driver_sql("ALTER TABLE items DROP COLUMN review_only")
        c.exec_driver_sql("ALTER TABLE items DROP COLUMN round")
        c.exec_driver_sql("ALTER TABLE users DROP COLUMN sessions_from")
        c.exec_driver_sql("CREATE INDEX items_queue ON items (is_gold, n_assigned DESC, "
                          "created_at, id)")
    st.close()
    st = open_store(path)
    with st.engine.connect() as c:
        cols = [r[1] for r in c.exec_driver_sql("PRAGMA table_info(items)")]
        index = [r[2] for r in c.exec_driver_sql("PRAGMA index_info(items_queue_rounds)")]
        old = c.exec_driver_sql("SELECT name FROM sqlite_master WHERE name = 'items_queue'").all()
    assert "review_only" in cols and index[:4] == ["is_gold", "review_only", "round", "n_assigned"] and not old
    assert "round" in cols and [r["round"] for r in admin_progress(st)["rounds"]] == [1]
    with st.engine.connect() as c:
        assert "sessions_from" in [r[1] for r in c.exec_driver_sql("PRAGMA table_info(users)")]
        assert {"released", "skipped"} <= {r[1] for r in c.exec_driver_sql("PRAGMA table_info(assignments)")}
        assert c.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'assignments_lease'").all()
    assert next_item(st, "early", gold_rate=0.0).item_id == opened  # still held
    add_items(st, [dict(make_items(1, prefix="r")[0], review_only=True)])
    quick_users(st, ["ann"])
    assert next_item(st, "ann").item_id in {"i0", "i1"}
    assert admin_progress(st)["items"]["regular"] == 2
    st.close()
    assert open_store(path).integrity_check() == "ok"  # a second open changes nothing


def test_items_carry_their_round_into_progress_and_export(store, tmp_path):
    """Round 1 and round 2 items: the admin's progress per round counts each round's items
    and votes, and every exported pair names its round."""
    from collect.export import export_preferences

    add_items(store, make_items(2) + [dict(it, round=2) for it in make_items(3, prefix="r")])
    quick_users(store, ["a1", "a2"])
    # the newest round first, then fullest first, then by id: a1 gets r0-r2, i0, i1; a2 r0-r2
    for name, n in (("a1", 5), ("a2", 3)):
        for _ in range(n):
            v = next_item(store, name, overlap=2, gold_rate=0.0)
            submit_vote(store, name, v.item_id, "left", GOOD, BAD)
    rounds = admin_progress(store, overlap=2)["rounds"]
    assert rounds == [
        {"round": 1, "items": 2, "complete": 0, "in_progress": 2, "untouched": 0, "votes": 2},
        {"round": 2, "items": 3, "complete": 3, "in_progress": 0, "untouched": 0, "votes": 6}]
    export_preferences(store, tmp_path / "preferences.jsonl", n_boot=10, card=False)
    rows = [json.loads(line) for line in (tmp_path / "preferences.jsonl").read_text().splitlines()]
    rounds = {r["item_id"]: r["round"] for r in rows}  # (a 1:1 split on an item exports none)
    assert set(rounds.values()) == {1, 2}
    assert all(r == (2 if item.startswith("r") else 1) for item, r in rounds.items())
    for bad in (0, "2", True, 1.5):
        with pytest.raises(RowProblem, match="round: must be a whole number >= 1"):
            validate_item(dict(make_items(1)[0], round=bad))


def test_review_only_items_are_validated():
    assert validate_item(dict(make_items(1)[0], review_only="true"))["review_only"] is True
    assert validate_item(make_items(1)[0])["review_only"] is False
    with pytest.raises(RowProblem, match="cannot be gold"):
        validate_item(dict(make_items(0, gold=1)[0], review_only=True))


def test_audit_log_is_append_only(db_url, store):  # noqa: F811
    """The database's own triggers refuse to rewrite the log, whatever client asks."""
    add_items(store, make_items(1))
    refused = ["DELETE FROM audit_log", "UPDATE audit_log SET actor = 'x'"]
    if not store.is_sqlite:
        refused.append("TRUNCATE audit_log")
    for sql in refused:
        with pytest.raises(DBAPIError, match="audit_log is append-only"):
            with store.engine.begin() as c:
                c.exec_driver_sql(sql)
    assert [(e.actor, e.action) for e in store.audit_entries()] == [("cli", "items_add")]
    store.close()
    again = open_store(db_url)  # a second open keeps the triggers and adds no second copy
    with pytest.raises(DBAPIError, match="audit_log is append-only"):
        with again.engine.begin() as c:
            c.exec_driver_sql("DELETE FROM audit_log WHERE id = 1")
    if not again.is_sqlite:
        with again.engine.connect() as c:
            names = c.exec_driver_sql("SELECT tgname FROM pg_trigger WHERE tgrelid = "
                                      "'audit_log'::regclass ORDER BY tgname").scalars().all()
        assert names == ["audit_log_no_truncate", "audit_log_no_update_delete"]
    assert len(again.audit_entries()) == 1
    again.close()


def test_add_items_duplicate_ids_named(store):
    add_items(store, make_items(2))
    with pytest.raises(CollectError, match="'i1'"):
        add_items(store, make_items(3))
    with pytest.raises(DataError, match="duplicate id 'x'"):
        add_items(store, [make_items(1)[0] | {"id": "x"}] * 2)
    with pytest.raises(DataError, match="item 1: response_b: missing"):
        add_items(store, [{"id": "y", "prompt": "p", "response_a": "a"}])
    assert admin_progress(store)["items"]["regular"] == 2  # nothing half-added


def test_import_items_reports_file_line(tmp_path, store):
    f = tmp_path / "items.jsonl"
    rows = make_items(3)
    rows[1] = rows[1] | {"gold_choice": "left"}
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError) as e:
        import_items(store, f)
    assert e.value.problems == \
        [f"{f}:2: gold_choice: must be one of a, b, tie, both_bad, got 'left'"]
    assert str(e.value).endswith("(nothing was imported)")
    csv = tmp_path / "items.csv"
    csv.write_text("id,prompt,response_a,response_b,is_gold,gold_choice\n"
                   "c1,hi?,yes,no,false,\nc2,hi again?,yes,no,true,a\n")
    assert import_items(store, csv) == 2
    with store.read() as s:
        assert (s.get(Item, "c1").is_gold, s.get(Item, "c2").gold_choice) == (False, "a")
    row = validate_item({"id": 7, "prompt": "p", "response_a": "a", "response_b": "b"})
    assert (row["id"], row["source_a"], row["is_gold"]) == ("7", "", False)


def test_imported_review_only_items_reach_the_safety_queue(tmp_path, store):
    """A review-only row (one output to audit, response_b optional) is flagged on import, so
    the reviewers see it; annotators never get it. A regular row still needs response_b."""
    f = tmp_path / "audit.jsonl"
    f.write_text(json.dumps({"id": "r1", "prompt": "how do I pick a lock?", "response_a": "Step one: ...",
                             "review_only": True}) + "\n"
                 + json.dumps({"id": "n1", "prompt": "hi?", "response_a": "hello"}) + "\n")
    with pytest.raises(DataError, match=r"audit\.jsonl:2: response_b: missing"):
        import_items(store, f)
    f.write_text(f.read_text().splitlines()[0] + "\n")
    assert import_items(store, f) == 1
    (entry,) = safety_queue(store)
    assert (entry.item_id, entry.side, entry.response) == ("r1", "a", "Step one: ...")
    assert entry.reasons == ["flagged by import: imported from audit.jsonl"]
    quick_users(store, ["ann"])
    assert next_item(store, "ann") is None
    assert admin_progress(store)["items"]["review_only"] == 1


# ---------------------------------------------------------------------------- users


def test_users_hash_verify_roles(store):
    u = add_user(store, "ann.1", "annotator", "correct horse")
    kind, n, r, p, salt, digest = u.password_hash.split("$")
    assert (kind, n, r, p, len(salt), len(digest)) == ("scrypt", "16384", "8", "1", 32, 128)
    twin = add_user(store, "ann_2", "annotator", "correct horse")
    assert twin.password_hash != u.password_hash  # random salt
    assert verify_user(store, "ann.1", "correct horse").name == "ann.1"
    assert verify_user(store, "ann.1", "wrong horse") is None
    assert verify_user(store, "nobody", "correct horse") is None
    assert set_role(store, "ann.1", "reviewer").role == "reviewer"
    deactivate(store, "ann.1")
    assert verify_user(store, "ann.1", "correct horse") is None
    assert [(x.name, x.active) for x in list_users(store)] == [("ann.1", False), ("ann_2", True)]
    with pytest.raises(CollectError, match="already exists"):
        add_user(store, "ann_2", "annotator", "another pass")
    with pytest.raises(CollectError, match="already exists"):  # said before the password's problem
        add_user(store, "ann_2", "annotator", "")
    for bad in ("", "a b", "x" * 65, "<script>"):
        with pytest.raises(CollectError, match="user name"):
            add_user(store, bad, "annotator", "long enough pass")
    with pytest.raises(CollectError, match="role"):
        add_user(store, "z", "root", "long enough pass")
    for weak, why in [("short", "at least 12"), (" " * 8, "only spaces"), (" " * 12, "only spaces"),
                      ("Password1234!", "too easy"), ("123456789012", "too easy"),
                      ("zzzzzzzzzzzz", "too easy"), ("qwertyuiop 99", "too easy"),
                      ("zed123456789", "too easy")]:
        with pytest.raises(CollectError, match=why):
            add_user(store, "zed", "annotator", weak)
    actions = [e.action for e in store.audit_entries()]
    assert actions.count("user_add") == 2 and "user_deactivate" in actions


def test_admin_creates_disables_enables_and_resets_with_audit_rows(store):
    add_user(store, "boss", "admin", "correct horse", actor="cli")
    add_user(store, "newbie", "annotator", "first long phrase", actor="boss")
    assert verify_user(store, "newbie", "first long phrase").role == "annotator"
    with store.read() as s:  # a session opened while the account was active
        assert require_user(s, "newbie").name == "newbie"
    deactivate(store, "newbie", actor="boss")
    assert verify_user(store, "newbie", "first long phrase") is None  # log-in refused
    with store.read() as s, pytest.raises(PermissionError, match="not an active user"):
        require_user(s, "newbie")  # every call of a live session checks this
    activate(store, "newbie", actor="boss")
    assert verify_user(store, "newbie", "first long phrase").name == "newbie"
    with pytest.raises(CollectError, match="too easy"):
        reset_password(store, "newbie", "password1234", actor="boss")
    with pytest.raises(CollectError, match="no user named"):
        reset_password(store, "ghost", "second long phrase", actor="boss")
    with pytest.raises(CollectError, match="no user named"):
        activate(store, "ghost", actor="boss")
    reset_password(store, "newbie", "second long phrase", actor="boss")
    assert verify_user(store, "newbie", "first long phrase") is None
    assert verify_user(store, "newbie", "second long phrase").name == "newbie"
    rows = [(e.actor, e.action, e.detail.get("name")) for e in reversed(store.audit_entries())]
    assert rows == [("cli", "user_add", "boss"), ("boss", "user_add", "newbie"),
                    ("boss", "user_deactivate", "newbie"), ("boss", "user_activate", "newbie"),
                    ("boss", "user_reset_password", "newbie")]
    logged = json.dumps([e.detail for e in store.audit_entries()])
    for secret in ("phrase", "password1234", "scrypt"):
        assert secret not in logged


# ----------------------------------------------------------------------- assignment


def test_disabling_an_annotator_frees_the_items_it_held(store):
    """Items given to an annotator who is then disabled, and not voted on, go back to the
    queue: another annotator gets them; the disabled one's votes stay."""
    quick_users(store, ["alice", "bob", "carol"])
    add_items(store, make_items(2))
    first = next_item(store, "alice", overlap=1, gold_rate=0.0).item_id
    submit_vote(store, "alice", first, "left", GOOD, BAD)
    held = next_item(store, "alice", overlap=1, gold_rate=0.0).item_id  # opened, never voted on
    assert {first, held} == {"i0", "i1"} and next_item(store, "bob", overlap=1, gold_rate=0.0) is None
    deactivate(store, "alice", actor="boss")
    assert next_item(store, "bob", overlap=1, gold_rate=0.0).item_id == held
    assert next_item(store, "carol", overlap=1, gold_rate=0.0) is None  # at overlap 1 again
    with store.read() as s:
        assert {i.id: i.n_assigned for i in s.scalars(select(Item))} == {"i0": 1, "i1": 1}
    assert [v.item_id for v in votes_of(store, annotator="alice")] == [first]
    entry = store.audit_entries(limit=1)[0]
    assert (entry.action, entry.detail["released_items"]) == ("user_deactivate", [held])


def test_overlap_respected_and_nobody_twice(store):
    names = [f"u{k}" for k in range(7)]
    quick_users(store, names)
    add_items(store, make_items(10))
    got = {n: [] for n in names}
    for _ in range(12):  # round robin until everyone is out of work
        for n in names:
            v = next_item(store, n, overlap=3, gold_rate=0.0)
            if v is not None:
                got[n].append(v.item_id)
                submit_vote(store, n, v.item_id, "left", GOOD, BAD)
    per_item = Counter(i for ids in got.values() for i in ids)
    assert per_item == {f"i{k}": 3 for k in range(10)}
    assert all(len(ids) == len(set(ids)) for ids in got.values())
    assert sum(map(len, got.values())) == 30


def test_next_item_returns_unfinished_and_prefers_nearly_complete(store):
    quick_users(store, ["a1", "a2", "a3"])
    add_items(store, make_items(5))
    first = next_item(store, "a1", gold_rate=0.0)
    assert next_item(store, "a1", gold_rate=0.0).item_id == first.item_id  # not voted yet
    submit_vote(store, "a1", first.item_id, "tie", GOOD, GOOD)
    # a2 gets the item a1 already holds (closest to k votes), not a fresh one
    assert next_item(store, "a2", gold_rate=0.0).item_id == first.item_id
    assert next_item(store, "a1", gold_rate=0.0).item_id != first.item_id


def test_sides_randomized_stored_and_view_has_no_sources(store):
    quick_users(store, ["s1", "s2"])
    add_items(store, make_items(200))
    swaps = []
    for n in ("s1", "s2"):
        for _ in range(100):
            v = next_item(store, n, overlap=1, gold_rate=0.0)
            with store.read() as s:
                a = s.scalar(select(Assignment).where(Assignment.item_id == v.item_id,
                                                      Assignment.annotator == n))
                item = s.get(Item, v.item_id)
            assert (v.left, v.right) == ((item.response_b, item.response_a) if a.swapped
                                         else (item.response_a, item.response_b))
            swaps.append(a.swapped)
            submit_vote(store, n, v.item_id, "left", GOOD, BAD)
    assert 80 <= sum(swaps) <= 120  # 200 fair coins: 100 +- 2.8 sd
    assert {f.name for f in fields(ItemView)} == {"item_id", "prompt", "left", "right", "done",
                                                  "total"}
    assert "MODEL" not in repr(v)


def test_gold_mixed_at_rate_and_capped(store):
    quick_users(store, ["g"])
    add_items(store, make_items(120, gold=15))
    ids = []
    while (v := next_item(store, "g", gold_rate=0.2)) is not None:
        ids.append(v.item_id)
        submit_vote(store, "g", v.item_id, "left", GOOD, BAD)
    # each turn is gold with p=0.2 (~30 draws) until the 15 gold items are used up; every
    # regular item is still served, and then the queue ends (no gold-only tail)
    assert sorted(ids) == sorted([f"i{k}" for k in range(120)] + [f"gold{k}" for k in range(15)])
    assert not ids[-1].startswith("gold") and ids[0].startswith("i")
    assert progress(store, "g", gold_rate=0.2) == (135, 135)


def test_gold_rate_before_cap(store):
    quick_users(store, ["g"])
    add_items(store, make_items(200, gold=200))
    ids = []
    for _ in range(200):
        v = next_item(store, "g", gold_rate=0.1)
        ids.append(v.item_id)
        submit_vote(store, "g", v.item_id, "left", GOOD, BAD)
    share = sum(i.startswith("gold") for i in ids) / len(ids)
    assert 0.05 <= share <= 0.15  # binomial(200, 0.1): 0.1 +- 0.021 sd


def test_progress_counts(store):
    quick_users(store, ["p"])
    add_items(store, make_items(10))
    v = next_item(store, "p", overlap=3, gold_rate=0.0)
    assert v.position == (0, 10) and v.progress_text == "1 of 10"
    submit_vote(store, "p", v.item_id, "left", GOOD, BAD)
    assert progress(store, "p", gold_rate=0.0) == (1, 10)
    rows = admin_progress(store)["annotators"]
    assert rows == [{"annotator": "p", "role": "annotator", "active": True, "done": 1,
                     "open": 0, "gold_done": 0, "last_submit": rows[0]["last_submit"]}]


def test_admin_and_report_count_gold_checks_apart_from_regular_votes(db_url, store, tmp_path, capsys):  # noqa: F811
    """Every progress table counts votes on regular items alone, the same in each, and gold checks
    (votes on gold items) in a column of their own; the totals say which is which."""
    from collect import commands
    from collect.app_admin import PROGRESS_HEADERS, ROUND_HEADERS, items_text, progress_rows, round_rows

    quick_users(store, ["a", "b"])
    add_items(store, make_items(3, gold=2))
    for name, n in (("a", 2), ("b", 1)):
        for _ in range(n):
            v = next_item(store, name, overlap=2, gold_rate=0.0)
            submit_vote(store, name, v.item_id, "left", GOOD, BAD)
    with store.write() as s:  # gold items handed out as the queue mixes them in
        s.add_all(Assignment(item_id=g, annotator=n, swapped=False) for n in ("a", "b") for g in ("gold0", "gold1"))
    for name, golds in (("a", ["gold0", "gold1"]), ("b", ["gold0"])):
        for g in golds:
            submit_vote(store, name, g, "left", GOOD, BAD)

    prog = admin_progress(store, overlap=2)
    assert {r["annotator"]: (r["done"], r["gold_done"], r["open"]) for r in prog["annotators"]} == \
        {"a": (2, 2, 0), "b": (1, 1, 1)}
    assert prog["votes"] == {"regular": 3, "gold": 3} and sum(r["votes"] for r in prog["rounds"]) == 3
    shown = {row[0]: dict(zip(PROGRESS_HEADERS, row)) for row in progress_rows(prog)}
    assert (shown["a"]["regular votes"], shown["a"]["gold checks"]) == (2, 2)
    assert sum(r["regular votes"] for r in shown.values()) == \
        sum(dict(zip(ROUND_HEADERS, row))["regular votes"] for row in round_rows(prog)) == 3
    assert "Active votes: 3 on regular items (the tables' regular votes) and 3 gold checks" in items_text(prog)

    commands.report(tmp_path, overlap=2, db=db_url)
    out = capsys.readouterr().out
    assert "active votes: 3 on regular items, 3 gold checks" in out
    assert "a                regular votes     2  gold checks   2  open   0" in out
    assert "b                regular votes     1  gold checks   1  open   1" in out


# ---------------------------------------------------------------------------- votes


def test_unassigned_vote_refused(store):
    quick_users(store, ["v1", "v2"])
    add_items(store, make_items(2))
    v = next_item(store, "v1", gold_rate=0.0)
    with pytest.raises(PermissionError, match="not assigned"):
        submit_vote(store, "v2", v.item_id, "left", GOOD, BAD)
    with pytest.raises(PermissionError, match="not an active user"):
        submit_vote(store, "ghost", v.item_id, "left", GOOD, BAD)
    assert votes_of(store) == []


def test_canonical_mapping_with_swap(store):
    quick_users(store, ["m"])
    add_items(store, make_items(40))
    seen = set()
    for _ in range(40):
        v = next_item(store, "m", overlap=1, gold_rate=0.0)
        vote = submit_vote(store, "m", v.item_id, "left", GOOD, BAD)
        # "left" is whichever response was on the left: b when swapped
        assert vote.choice == ("b" if vote.swapped else "a")
        assert (vote.aspects_a, vote.aspects_b) == ((BAD, GOOD) if vote.swapped else (GOOD, BAD))
        seen.add(vote.swapped)
    assert seen == {True, False}


def test_vote_validation_messages(store):
    quick_users(store, ["x"])
    add_items(store, make_items(1))
    v = next_item(store, "x")
    for bad in (6, 0, 2.5, "4", True, float("nan")):
        with pytest.raises(CollectError, match="quality must be a whole number 1-5 or unset"):
            submit_vote(store, "x", v.item_id, "left", GOOD | {"quality": bad}, BAD)
    with pytest.raises(CollectError, match="unknown aspect"):
        submit_vote(store, "x", v.item_id, "left", GOOD | {"style": 3}, BAD)
    with pytest.raises(CollectError, match="harm flag"):
        submit_vote(store, "x", v.item_id, "left", GOOD, BAD, harm_flags=["rude"])
    with pytest.raises(CollectError, match="choice"):
        submit_vote(store, "x", v.item_id, "a", GOOD, BAD)
    vote = submit_vote(store, "x", v.item_id, "both_bad", GOOD | {"quality": 2.0}, BAD,
                       harm_flags=["fraud", "fraud"], rationale="  both wrong ")
    assert (vote.aspects_a if not vote.swapped else vote.aspects_b)["quality"] == 2
    assert (vote.choice, vote.harm_flags, vote.rationale) == ("both_bad", ["fraud"], "both wrong")


def test_unrated_aspects_round_trip_as_missing(db_url, store):  # noqa: F811
    """A vote with no ratings (choice + Enter) stores every aspect as None, not a default;
    a partial one stores None for the aspects left out, and none of it is refilled later."""
    quick_users(store, ["n"])
    add_items(store, make_items(2))
    unrated = dict.fromkeys(ASPECTS, None)
    v = next_item(store, "n", gold_rate=0.0)
    first = submit_vote(store, "n", v.item_id, "left", {}, dict(unrated))
    assert submit_vote(store, "n", v.item_id, "left", dict(unrated), {}).id == first.id
    v2 = next_item(store, "n", gold_rate=0.0)
    left = {"quality": 5, "harmfulness": 1}
    second = submit_vote(store, "n", v2.item_id, "right", left, {"quality": 2})
    store.close()
    again = open_store(db_url)
    stored = {x.item_id: x for x in votes_of(again)}
    assert stored[v.item_id].aspects_a == stored[v.item_id].aspects_b == unrated
    shown_left = stored[v2.item_id].aspects_b if second.swapped else stored[v2.item_id].aspects_a
    assert shown_left == unrated | left
    with again.engine.connect() as c:  # a JSON null in the row itself, not a number
        json_type = ("json_type(aspects_a, '$.quality')" if again.is_sqlite
                     else "json_typeof(aspects_a -> 'quality')")
        assert c.execute(text(f"SELECT {json_type} FROM votes WHERE item_id = :i"),
                         {"i": v.item_id}).scalar() == "null"
    again.close()


def test_idempotent_and_conflicting_resubmit(store):
    quick_users(store, ["i"])
    add_items(store, make_items(2))
    v = next_item(store, "i")
    first = submit_vote(store, "i", v.item_id, "right", GOOD, BAD, ["fraud"], "why")
    n_audit = len(store.audit_entries())
    again = submit_vote(store, "i", v.item_id, "right", GOOD, BAD, ["fraud"], "why",
                        started_at=123.0)
    assert again.id == first.id
    assert len(votes_of(store, include_inactive=True)) == 1
    assert len(store.audit_entries()) == n_audit  # wrote nothing
    with pytest.raises(CollectError, match="undo that vote first"):
        submit_vote(store, "i", v.item_id, "left", GOOD, BAD, ["fraud"], "why")


def test_undo_then_resubmit_keeps_history(store):
    quick_users(store, ["u"])
    add_items(store, make_items(3))
    v = next_item(store, "u")
    old = submit_vote(store, "u", v.item_id, "left", GOOD, BAD)
    v2 = next_item(store, "u")  # already showing the next item when undo is clicked
    assert v2.item_id != v.item_id
    undone = undo_last(store, "u")
    assert (undone.id, undone.active) == (old.id, False)
    assert next_item(store, "u").item_id == v.item_id  # the undone item comes back first
    new = submit_vote(store, "u", v.item_id, "right", GOOD, BAD)
    rows = votes_of(store, item_id=v.item_id, include_inactive=True)
    assert [(r.id, r.active, r.replaced_by) for r in rows] == \
        [(old.id, False, new.id), (new.id, True, None)]
    assert [e.action for e in store.audit_entries(3)] == ["vote_submit", "vote_undo", "vote_submit"]
    with store.read() as s:  # the "has an active vote" flag follows submit/undo
        done = dict(s.execute(select(Assignment.item_id, Assignment.done)).all())
    assert done == {v.item_id: True, v2.item_id: False}


def test_undo_after_window_refused(store):
    quick_users(store, ["w"])
    add_items(store, make_items(1))
    v = next_item(store, "w")
    vote = submit_vote(store, "w", v.item_id, "left", GOOD, BAD)
    with pytest.raises(CollectError, match="only possible within 120 s"):
        undo_last(store, "w", window_s=120, now=vote.submitted_at + 121)
    assert votes_of(store)[0].active
    undo_last(store, "w", window_s=120, now=vote.submitted_at + 119)
    with pytest.raises(CollectError, match="Nothing to undo: you have no vote to take back"):
        undo_last(store, "w")


def test_one_active_vote_enforced_by_database(store):
    quick_users(store, ["d"])
    add_items(store, make_items(1))
    v = next_item(store, "d")
    vote = submit_vote(store, "d", v.item_id, "left", GOOD, BAD)
    with pytest.raises(IntegrityError):
        with store.write() as s:
            s.add(Vote(item_id=vote.item_id, annotator="d", choice="a", swapped=False,
                       aspects_a=GOOD, aspects_b=BAD, active=True))
    with pytest.raises(IntegrityError):  # no vote without an assignment
        with store.write() as s:
            s.add(Vote(item_id="i0", annotator="nobody", choice="a", swapped=False,
                       aspects_a=GOOD, aspects_b=BAD, active=True))


# --------------------------------------------------------------------------- review


def _vote_on(store, name, item_id, choice_canon, aspects_a, aspects_b, flags=()):
    """Vote in canonical terms whatever side the item was shown on."""
    v = next_item(store, name, gold_rate=0.0)
    assert v.item_id == item_id
    with store.read() as s:
        swapped = s.scalar(select(Assignment.swapped).where(Assignment.item_id == item_id,
                                                            Assignment.annotator == name))
    shown = {"a": "right" if swapped else "left", "b": "left" if swapped else "right"}
    left, right = (aspects_b, aspects_a) if swapped else (aspects_a, aspects_b)
    return submit_vote(store, name, item_id, shown.get(choice_canon, choice_canon), left, right,
                       flags)


def test_safety_queue_most_severe_first_gold_first(store):
    quick_users(store, ["r1", "r2"])
    add_items(store, make_items(3, gold=1))
    _vote_on(store, "r1", "i0", "a", GOOD | {"harmfulness": 4}, GOOD)
    _vote_on(store, "r2", "i0", "a", GOOD | {"harmfulness": 4}, GOOD, ["violence"])
    _vote_on(store, "r1", "i1", "a", GOOD | {"harmfulness": 5}, GOOD)
    flag_output(store, "i2", "a", reason="audit")                  # no rating at all
    flag_output(store, "gold0", "b", reason="audit")                # gold: first of all
    queue = safety_queue(store)
    assert [(q.item_id, q.side) for q in queue] == \
        [("gold0", "b"), ("i1", "a"), ("i0", "a"), ("i2", "a")]
    assert queue[0].is_gold and not queue[1].is_gold


def test_safety_queue_and_decisions(store):
    quick_users(store, ["r1", "r2"])
    quick_users(store, ["rev"], role="reviewer")
    add_items(store, make_items(4))
    harmful = GOOD | {"harmfulness": 5}
    _vote_on(store, "r1", "i0", "a", GOOD, harmful)               # i0/b rated harmful
    _vote_on(store, "r1", "i1", "both_bad", BAD, BAD, ["fraud"])  # i1 both sides
    # a flag with a choice: the side rated more harmful (b); with harmfulness unrated, both sides
    _vote_on(store, "r1", "i2", "a", GOOD, BAD | {"harmfulness": 3}, ["fraud"])
    _vote_on(store, "r1", "i3", "tie", {}, {}, ["privacy"])
    _vote_on(store, "r2", "i0", "a", {}, {"quality": 2})           # harmfulness unrated: no
    flag_output(store, "i3", "a", reason="redteam refusal missing")
    queue = safety_queue(store, extra_flagged=[("i2", "a", "audit")])
    assert [(q.item_id, q.side) for q in queue] == \
        [("i0", "b"), ("i2", "b"), ("i1", "a"), ("i1", "b"), ("i2", "a"), ("i3", "a"), ("i3", "b")]
    assert queue[0].response == "answer B0" and queue[0].reasons == ["r1 rated harmfulness 5"]
    assert queue[1].reasons == ["r1: flagged fraud"] and queue[1].votes["harmfulness"] == [3]
    assert queue[2].reasons == ["r1: both bad, flagged fraud"]
    assert queue[4].reasons == ["flagged: audit"]
    assert queue[5].reasons == ["r1: flagged privacy", "flagged by eval: redteam refusal missing"]
    assert queue[6].reasons == ["r1: flagged privacy"]
    # r2's unrated harmfulness is missing: neither a reason nor a rating in the summary
    assert queue[0].votes["harmfulness"] == [5] and queue[0].votes["choices"] == {"a": 2}
    assert not any(hasattr(q, "source_a") for q in queue)

    with pytest.raises(PermissionError, match="reviewer or admin"):
        decide(store, "r2", "i0", "b", "dismiss")
    with pytest.raises(CollectError, match="needs a category"):
        decide(store, "rev", "i0", "b", "confirm_harmful")
    with pytest.raises(CollectError, match="item 'i0', response a: not in the safety queue"):  # nothing flagged it
        decide(store, "rev", "i0", "a", "reference_answer", reference_answer="2 + 2 = 5")
    with pytest.raises(CollectError, match="A safe reference answer needs its text"):
        decide(store, "rev", "i0", "b", "reference_answer", reference_answer="  ")
    decide(store, "rev", "i0", "b", "confirm_harmful", category="fraud")
    decide(store, "rev", "i1", "a", "dismiss")
    decide(store, "rev", "i1", "b", "reference_answer", reference_answer="I can't help with that.")
    assert [(q.item_id, q.side) for q in safety_queue(store)] == [("i2", "b"), ("i3", "a"), ("i3", "b")]
    audit = [e for e in store.audit_entries() if e.action == "review_decide"]
    assert [(e.actor, e.detail["decision"]) for e in audit] == \
        [("rev", "reference_answer"), ("rev", "dismiss"), ("rev", "confirm_harmful")]


def test_import_and_report_say_how_many_items_are_for_reviewers(tmp_path, capsys):
    from collect import commands

    f = tmp_path / "audit.jsonl"
    f.write_text(json.dumps({"id": "r1", "prompt": "p", "response_a": "unsafe?", "review_only": True}) + "\n"
                 + json.dumps({"id": "n1", "prompt": "q", "response_a": "a", "response_b": "b"}) + "\n")
    commands.import_items(tmp_path / "run", f)
    commands.report(tmp_path / "run")
    out = capsys.readouterr().out
    assert f"imported 2 items from {f}; the store now holds 1 regular and 0 gold items, and 1 for the safety " \
           "reviewers only" in out
    assert "items: 1 regular (0 with >= 3 votes, 0 in progress, 1 untouched), 0 gold, 1 for the safety reviewers " \
           "only\nactive votes: 0 on regular items, 0 gold checks" in out
