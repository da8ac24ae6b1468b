"""Accounts: annotators, reviewers and admins, with scrypt password hashes.

scrypt (RFC 7914) is memory-hard: n=2**14, r=8 needs 16 MiB per guess, which makes GPU
cracking of a leaked database expensive; it ships with the standard library, so no extra
dependency. The parameters are stored in the hash ("scrypt$n$r$p$salt$hash"), so raising them
later still verifies old hashes.
"""
from __future__ import annotations

import contextvars
import hashlib
import hmac
import re
import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .lease import release
from .store import ROLES, Assignment, CollectError, Store, User, audit, now

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_MAXMEM = 64 * 1024 * 1024  # above the 16 MiB that n, r need; OpenSSL's default is too tight
NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MIN_PASSWORD = 12
# Refused whatever their length: the passwords (and patterns) tried first by any guesser. The
# check ignores case, spaces and a trailing run of digits or punctuation ("Password1234!").
COMMON_PASSWORDS = frozenset("""
password passwort passphrase letmein welcome iloveyou admin administrator qwerty qwertyuiop
asdfghjkl zxcvbnm abc abcdef abcdefghijkl monkey dragon football baseball sunshine princess
master trustno shadow superman batman starwars changeme secret default guest test tester
login annotator reviewer annotation rlhf correcthorsebatterystaple
""".split())
# When the log-in session behind the current request began (None: a call from the command line
# or a test, with no session). The app sets it (app_common.session_name, app_vote) and check_user
# refuses a session that began before the user's `sessions_from`: a password reset or a disabled
# account ends every session open at that moment, in every server process, on its next call.
SESSION_BEGAN: contextvars.ContextVar[float | None] = contextvars.ContextVar("session_began", default=None)
# Verifying an unknown name hashes against this, so a login takes as long whether or not the
# name exists (no user enumeration by timing).
_DUMMY_HASH = None


def hash_password(password: str, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                             p=int(p), maxmem=_MAXMEM)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, bytes.fromhex(digest))


def check_password_strength(password: str, name: str = "") -> str:
    """The password when it is long enough and not an obvious guess; else CollectError (the
    message never repeats the password)."""
    if not isinstance(password, str) or not password.strip():
        raise CollectError(f"password for {name!r}: must not be empty or only spaces")
    if len(password) < MIN_PASSWORD:
        raise CollectError(f"password for {name!r}: at least {MIN_PASSWORD} characters")
    letters = "".join(password.lower().split())
    core = re.sub(r"[\W\d_]+$", "", letters)  # "Password 1234!" -> "password"
    if core in COMMON_PASSWORDS or not core or core == name.lower() or len(set(letters)) < 4:
        raise CollectError(f"password for {name!r}: too easy to guess (a common password, the "
                           "user name, only digits or a few repeated characters); use a phrase")
    return password


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise CollectError(f"user name {name!r}: use 1-64 characters of A-Z a-z 0-9 _ . -")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise CollectError(f"role {role!r}: must be one of {', '.join(ROLES)}")
    return role


def check_new_user(store: Store, name: str, role: str) -> None:
    """What can be told before a password is asked for: the name, the role, and that no account
    has the name yet."""
    check_name(name)
    check_role(role)
    if get_user(store, name) is not None:
        raise CollectError(f"user {name!r} already exists")


def add_user(store: Store, name: str, role: str, password: str, actor: str = "cli") -> User:
    check_new_user(store, name, role)
    check_password_strength(password, name)
    hashed = hash_password(password)  # slow on purpose: outside the write transaction

    def write(s):
        if s.scalar(select(User.id).where(User.name == name)) is not None:
            raise CollectError(f"user {name!r} already exists")
        user = User(name=name, role=role, password_hash=hashed, created_at=now(), active=True)
        s.add(user)
        audit(s, actor, "user_add", name=name, role=role)
        s.flush()
        return user

    try:
        return store.transact(write)
    except IntegrityError:  # another process added the same name between check and insert
        raise CollectError(f"user {name!r} already exists") from None


def verify_user(store: Store, name: str, password: str) -> User | None:
    """The user when the name exists, is active and the password matches; else None."""
    global _DUMMY_HASH
    user = get_user(store, name) if isinstance(name, str) and NAME_RE.fullmatch(name) else None
    if user is None:
        _DUMMY_HASH = _DUMMY_HASH or hash_password("not a real password")
        check_password(str(password), _DUMMY_HASH)
        return None
    ok = isinstance(password, str) and check_password(password, user.password_hash)
    return user if ok and user.active else None


def get_user(store: Store, name: str) -> User | None:
    with store.read() as s:
        return s.scalar(select(User).where(User.name == name))


def _update(store: Store, name: str, actor: str, action: str, **values) -> User:
    def write(s):
        user = s.scalar(select(User).where(User.name == name))
        if user is None:
            raise CollectError(f"no user named {name!r}")
        old = {k: getattr(user, k) for k in values}
        for k, v in values.items():
            setattr(user, k, v)
        audit(s, actor, action, name=name, old=old, new=values)
        return user

    return store.transact(write)


def set_role(store: Store, name: str, role: str, actor: str = "cli") -> User:
    return _update(store, name, actor, "user_set_role", role=check_role(role))


def deactivate(store: Store, name: str, actor: str = "cli") -> User:
    """The account can no longer log in or vote, and its open sessions end for good (enabled
    again, it logs in anew); its votes and history stay. The items it was given and has not
    voted on go back to the queue, so its slots on them do not keep other annotators waiting."""
    def write(s):
        user = s.scalar(select(User).where(User.name == name))
        if user is None:
            raise CollectError(f"no user named {name!r}")
        old = {"active": user.active}
        user.active, user.sessions_from = False, now()
        held = [item for item, _ in release(s, Assignment.annotator == name)]
        audit(s, actor, "user_deactivate", name=name, old=old, new={"active": False},
              released_items=held)
        return user

    return store.transact(write)


def activate(store: Store, name: str, actor: str = "cli") -> User:
    """A deactivated account may log in and work again, with the role it had."""
    return _update(store, name, actor, "user_activate", active=True)


def reset_password(store: Store, name: str, password: str, actor: str = "cli") -> User:
    """A new password for `name` (the strength policy applies). The audit row names who reset
    whose password, never the password or its hash."""
    check_password_strength(password, name)
    hashed = hash_password(password)  # slow on purpose: outside the write transaction

    def write(s):
        user = s.scalar(select(User).where(User.name == name))
        if user is None:
            raise CollectError(f"no user named {name!r}")
        user.password_hash = hashed
        user.sessions_from = now()  # whoever logged in with the old password is logged out
        audit(s, actor, "user_reset_password", name=name)
        return user

    return store.transact(write)


def list_users(store: Store) -> list[User]:
    with store.read() as s:
        return list(s.scalars(select(User).order_by(User.name)))


def require_user(session, name: str, roles: tuple[str, ...] = ROLES) -> User:
    """The active user `name` with one of `roles`, inside the caller's transaction; else
    PermissionError (a deactivated account keeps no rights, whatever its role)."""
    return check_user(session.scalar(select(User).where(User.name == name)), name, roles)


def check_user(user: User | None, name: str, roles: tuple[str, ...] = ROLES) -> User:
    """require_user's verdict on a row the caller has already read (None: no such user)."""
    if user is None:
        raise PermissionError(f"{name!r} is not an active user: there is no such account")
    if not user.active:
        raise PermissionError(f"{name!r} is not an active user: the account is disabled (an admin can enable it)")
    began = SESSION_BEGAN.get()
    if began is not None and began < (user.sessions_from or 0.0):
        raise PermissionError("this log-in ended when the password was reset or the account was disabled: "
                              "log out and log in again")
    if user.role not in roles:
        article = "an" if user.role[0] in "aeiou" else "a"
        raise PermissionError(f"{name!r} is {article} {user.role}; this needs the role "
                              f"{' or '.join(roles)}")
    return user
