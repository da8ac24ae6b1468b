"""`rlhf collect SUBCOMMAND ...`: argparse over collect/commands.py, the app and generation.

    serve     the annotation app (127.0.0.1:7860 unless told otherwise)
    generate  sample response pairs for the run's "pref" prompts and store them as items
    import    add comparison items from a file someone else made
    export    write preferences.jsonl and its dataset card
    users     add / list / set-role / deactivate accounts
    report    progress per annotator and the agreement table

`rlhf collect simulate` (simulated annotators judging by the demo's oracle) lives in
demo/simulate.py: the rlhf CLI routes it there, since no stage imports the demo.

Every subcommand takes --db URL: the store on another database (PostgreSQL:
`postgresql+psycopg://user:pass@host/db`) instead of <run>/collect/annotations.db.

Heavy imports (gradio, torch) happen inside the subcommand that needs them, so `--help` and
`users` answer at once.
"""
from __future__ import annotations

import argparse
import getpass
import sys

from core.config import UserError

RUN_HELP = "run directory (the store is <run>/collect/annotations.db unless --db says otherwise)"
DB_HELP = ("the store's SQLAlchemy URL, e.g. postgresql+psycopg://user:pass@host/db "
           "(default: SQLite at <run>/collect/annotations.db)")


def add_run_db(p: argparse.ArgumentParser) -> None:
    """--run and --db, for every command that opens the store."""
    p.add_argument("--run", default="runs/demo", help=RUN_HELP + " (default: runs/demo)")
    p.add_argument("--db", default=None, metavar="URL", help=DB_HELP)


_run = add_run_db


class _Parser(argparse.ArgumentParser):
    """A usage error is one line and exit 2 (`rlhf collect serve: argument --overlap: invalid int
    value: 'abc'`), not argparse's usage block; --help prints it. Sub-commands' parsers are of
    this class too (argparse makes them of the parent's)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (--help lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rlhf collect", description="Human preference "
                                     "collection: pairs, annotation app, agreement, export.",
                                     epilog="rlhf collect simulate: simulated annotators vote on the "
                                     "stored items (the demo's oracle judges; demo/simulate.py)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser("serve", help="serve the annotation app")
    _run(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--overlap", type=int, default=3, help="annotators per item (default 3)")
    p.add_argument("--gold_rate", type=float, default=0.1, help="share of gold items shown")
    p.add_argument("--guidelines", default=None, help="markdown file shown to annotators")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the side each annotator sees a response on and of the gold items' mix "
                        "(default: a secret one drawn at each start, so that nobody can work them out from "
                        "the public code and an item's prompt; the side of an item given out is kept in the "
                        "store either way)")
    p.add_argument("--session_hours", type=float, default=8.0,
                   help="a log-in expires this long after it began (default 8)")
    p.add_argument("--idle_minutes", type=float, default=60.0,
                   help="... or after this long without a request (default 60; 0: never)")
    p.add_argument("--lease_minutes", type=float, default=30.0,
                   help="an item given to an annotator and not voted on within this long goes back to the "
                        "queue for the others; their answer sent later is kept if the item still needs it "
                        "(default 30; 0: never)")

    p = sub.add_parser("generate", help="sample response pairs and store them as items")
    _run(p)
    p.add_argument("--policy", default="sft", help="base, sft, dpo, ppo or an adapter directory")
    p.add_argument("--vs", default=None, help="a second policy for a blind A/B test "
                   "(default: sample --policy twice)")
    p.add_argument("--n", type=int, default=300, help="at most this many prompts")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top_p", type=float, default=0.95)
    p.add_argument("--max_new_tokens", type=int, default=96)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch; 0 = all")
    p.add_argument("--workers", type=int, default=1,
                   help="single-thread processes that share the sampling on the CPU, 0 = one per thread (pays "
                        "with a small model; the same pairs either way)")
    p.add_argument("--round", type=int, default=1,
                   help="the annotation round these items belong to (default 1)")
    p.add_argument("--candidates", type=int, default=2,
                   help="samples per prompt; the two most different become the pair (default 2)")
    p.add_argument("--pairs_per_prompt", type=int, default=1,
                   help="items per prompt, each sampled with its own seeds (default 1): more pairs from the "
                        "same prompts")

    p = sub.add_parser("import", help="add comparison items from JSONL/JSON/CSV/Parquet")
    _run(p)
    p.add_argument("file")

    p = sub.add_parser("export", help="write <run>/collect/preferences.jsonl and README.md")
    _run(p)
    p.add_argument("--min_agreement", type=float, default=0.0)
    p.add_argument("--min_votes", type=int, default=1)
    p.add_argument("--min_harm_gap", type=float, default=1.0,
                   help="'both bad' items: export the less harmful response as chosen when the mean "
                        "harmfulness ratings differ by at least this (above 4: never)")
    p.add_argument("--round", type=int, default=None,
                   help="only this annotation round's items (default: every round)")

    p = sub.add_parser("report", help="progress and agreement")
    _run(p)
    p.add_argument("--overlap", type=int, default=3)

    p = sub.add_parser("users", help="manage accounts")
    users = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    u = users.add_parser("add", help="add an account (asks for the password)")
    u.add_argument("name")
    u.add_argument("--role", required=True, choices=["annotator", "reviewer", "admin"])
    u.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of stdin (scripts)")
    _run(u)
    u = users.add_parser("list", help="list accounts")
    _run(u)
    u = users.add_parser("set-role", help="change an account's role")
    u.add_argument("name")
    u.add_argument("role", choices=["annotator", "reviewer", "admin"])
    _run(u)
    u = users.add_parser("deactivate", help="block an account (its votes stay, its open sessions end)")
    u.add_argument("name")
    _run(u)
    u = users.add_parser("activate", help="let a deactivated account log in again")
    u.add_argument("name")
    _run(u)
    u = users.add_parser("reset-password", help="a new password for an account (asks for it; ends its "
                                                "open sessions)")
    u.add_argument("name")
    u.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of stdin (scripts)")
    _run(u)
    return parser


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    try:
        first = getpass.getpass("password: ")
        again = getpass.getpass("again: ")
    except EOFError:  # Ctrl-D at the prompt
        raise UserError("no password given (nothing was changed)") from None
    if first != again:
        raise UserError("the two passwords differ")
    return first


def _users(args) -> int:
    from . import commands, users

    if args.action == "add":
        commands.users_add(args.run, args.name, args.role, lambda: _password(args.password_stdin),
                           db=args.db)
        return 0
    store = commands.store_for(args.run, args.db)
    try:
        if args.action == "list":
            for u in users.list_users(store):
                print(f"{u.name:24s} {u.role:10s} {'active' if u.active else 'deactivated'}")
        elif args.action == "set-role":
            users.set_role(store, args.name, args.role)
            print(f"{args.name} is now a {args.role}")
        elif args.action == "activate":
            users.activate(store, args.name)
            print(f"activated {args.name}: they log in with their password")
        elif args.action == "reset-password":
            users.reset_password(store, args.name, _password(args.password_stdin))
            print(f"new password for {args.name}; their open sessions have ended")
        else:
            users.deactivate(store, args.name)
            print(f"deactivated {args.name}")
    finally:
        store.close()
    return 0


# Each option's allowed values: (test, what the message says). Checked before any work.
_RANGES = {
    "port": (lambda v: 0 < v < 65536, "a port number 1-65535"),
    "overlap": (lambda v: v >= 1, "at least 1"),
    "gold_rate": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    "session_hours": (lambda v: v > 0, "above 0"),
    "idle_minutes": (lambda v: v >= 0, "0 (no limit) or more"),
    "lease_minutes": (lambda v: v >= 0, "0 (no limit) or more"),
    "n": (lambda v: v >= 1, "at least 1"),
    "temperature": (lambda v: v > 0, "above 0"),
    "top_p": (lambda v: 0.0 < v <= 1.0, "in (0, 1]"),
    "max_new_tokens": (lambda v: v >= 1, "at least 1"),
    "batch_size": (lambda v: v >= 1, "at least 1"),
    "threads": (lambda v: v >= 0, "0 (all) or more"),
    "candidates": (lambda v: v >= 2, "at least 2"),
    "pairs_per_prompt": (lambda v: v >= 1, "at least 1"),
    "round": (lambda v: v >= 1, "at least 1"),
    "min_agreement": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
    "min_votes": (lambda v: v >= 1, "at least 1"),
    "min_harm_gap": (lambda v: v > 0, "above 0"),
}


def check_options(args) -> None:
    """UserError naming the first option outside its range (see _RANGES)."""
    for name, (ok, allowed) in _RANGES.items():
        value = getattr(args, name, None)
        if value is not None and not ok(value):
            raise UserError(f"--{name} {value}: must be {allowed}")


def dispatch(args) -> int:
    from . import commands

    check_options(args)

    if args.command == "serve":
        from .app import serve

        import secrets

        serve(args.run, host=args.host, port=args.port, overlap=args.overlap, gold_rate=args.gold_rate,
              guidelines=args.guidelines, seed=secrets.randbits(62) if args.seed is None else args.seed,
              session_max_s=args.session_hours * 3600, session_idle_s=args.idle_minutes * 60,
              lease_s=args.lease_minutes * 60, db=args.db)
    elif args.command == "generate":
        from .generate import generate_pairs

        generate_pairs(args.run, policy=args.policy, vs=args.vs, n=args.n,
                       temperature=args.temperature, top_p=args.top_p,
                       max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                       seed=args.seed, device=args.device, threads=args.threads, db=args.db,
                       candidates=args.candidates, round_no=args.round, workers=args.workers,
                       pairs_per_prompt=args.pairs_per_prompt)
    elif args.command == "import":
        commands.import_items(args.run, args.file, db=args.db)
    elif args.command == "export":
        commands.export(args.run, min_agreement=args.min_agreement, min_votes=args.min_votes,
                        db=args.db, min_harm_gap=args.min_harm_gap, round_no=args.round or 0)
    elif args.command == "report":
        commands.report(args.run, overlap=args.overlap, db=args.db)
    elif args.command == "users":
        return _users(args)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as e:  # --help, or a usage error argparse already explained
        return int(e.code or 0)
    try:
        return dispatch(args)
    except (UserError, FileNotFoundError, PermissionError) as e:
        print(f"rlhf collect {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
