"""What the app puts in front of Gradio's HTTP routes: the log-in throttle, a refusal of
requests from other sites, and a log-in page that tells nothing about the API.

`Gate` is an ASGI middleware (installed through `launch`'s app_kwargs, innermost, so it sees
Gradio's responses before compression). It records each request's client address for the
throttle (Gradio calls the auth function with the name and password only), and rewrites the
page Gradio serves to a browser without a session:

- Gradio (6.31) renders `window.gradio_api_info`, the schema of every named endpoint, into
  that page whether or not the visitor is logged in (routes.main calls get_api_info before it
  looks at the session), and no launch or Blocks option turns this off: `api_visibility`
  "undocumented" still lists an endpoint for `/?all_endpoints=true`, and "private" endpoints
  cannot be called by gradio_client at all. So the log-in page gets `null` there; the
  browser's client then fetches /gradio_api/info, which needs a session, when it needs the
  schema, and the page served after log-in is left untouched.
- Requests from another site's page (cross-site request forgery) are refused with 403, on
  every route: Gradio's CORS layer (6.31) grants any origin, with credentials, when the server
  is reached by a name other than localhost (behind the documented HTTPS proxy), and its
  session cookie is SameSite=None, so a page elsewhere could otherwise call an admin's
  handlers in the admin's logged-in browser. A browser names the page's origin in the Origin
  header of every cross-site request it lets a script send, and of every POST; it must name
  this server (`same_origin`). The session cookies are also rewritten to SameSite=Lax, so a
  browser does not send them with another site's requests at all.
- Gradio's log-in form shows "Incorrect Credentials" for a 400 and nothing for any other
  status. A small script shows the reason the server gives with a 429 (the throttle), so a
  throttled person reads why and for how long.
"""
from __future__ import annotations

import collections
import contextvars
import re
import threading
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse

# The address of the client behind the current request ("" outside a request). Behind a
# reverse proxy on this machine, uvicorn puts the X-Forwarded-For address here.
CLIENT_ADDRESS: contextvars.ContextVar[str] = contextvars.ContextVar("client_address", default="")


class Throttled(Exception):
    """A log-in refused before its password was checked."""

    def __init__(self, retry_after_s: float):
        self.retry_after_s = retry_after_s
        minutes = max(1, round(retry_after_s / 60))
        super().__init__(f"Too many failed log-ins from this address or for this name: wait "
                         f"{minutes} min and try again.")


class LoginThrottle:
    """Bounds password guesses, decided before the (slow) password check.

    Every attempt first takes a reservation under one lock (`reserve`); a failed check keeps
    it as a failure, a successful one gives it back (`release`). Attempts in flight thus
    count at once: a burst of concurrent guesses gets `limit` checks, not one per request.
    Counted in `window_s`, per key:
      - (name, address): `limit`: guessing one account from one address;
      - address: `address_limit`: one password tried across many names from one address;
      - name: `name_limit`, above `address_limit`: guessing one account from many addresses.
    So one address can lock out only itself, never another person's account. Many addresses
    together can lock an account by its name limit, but not for an address that has logged in
    as that name before (remembered while the server runs, the `MAX_KEYS` latest): its owner
    still gets in from where they usually work, within that address's own limits.
    """

    MAX_KEYS = 30_000  # keys tracked at once: guesses at random names cannot fill memory

    def __init__(self, limit: int = 10, address_limit: int = 30, name_limit: int = 100,
                 window_s: float = 300.0):
        if name_limit <= address_limit:
            raise ValueError("name_limit must exceed address_limit (or one address could lock "
                             "out any account)")
        self.window_s = window_s
        self._limits = {"pair": limit, "address": address_limit, "name": name_limit}
        self._attempts: dict[tuple, collections.deque] = {}
        self._known: collections.OrderedDict[tuple, None] = collections.OrderedDict()  # (name, address) logged in
        self._lock = threading.Lock()

    @staticmethod
    def _keys(name: str, address: str) -> list[tuple]:
        return [("pair", name, address), ("address", address), ("name", name)]

    def _recent(self, key: tuple, now: float) -> collections.deque:
        q = self._attempts.get(key)
        while q and now - q[0] > self.window_s:
            q.popleft()
        if q is not None and not q:
            del self._attempts[key]
        return q or collections.deque()

    def reserve(self, name: str, address: str, now: float) -> float:
        """Take an attempt: its time, to give to `release` if the password was right; raise
        Throttled when a limit is reached (nothing is counted then)."""
        keys = self._keys(name, address)
        with self._lock:
            queues = [(k, self._recent(k, now)) for k in keys]
            known = (name, address) in self._known
            full = [q for k, q in queues if len(q) >= self._limits[k[0]] and not (known and k[0] == "name")]
            if full:
                raise Throttled(max(q[0] for q in full) + self.window_s - now)
            if len(self._attempts) >= self.MAX_KEYS:
                for old in list(self._attempts):
                    self._recent(old, now)
            for k in keys:
                self._attempts.setdefault(k, collections.deque()).append(now)
        return now

    def release(self, name: str, address: str, reserved: float) -> None:
        """The attempt taken at `reserved` succeeded: it is not a failure, and this address is
        known for this name from now on."""
        with self._lock:
            self._known[(name, address)] = None
            self._known.move_to_end((name, address))
            if len(self._known) > self.MAX_KEYS:
                self._known.popitem(last=False)
            for k in self._keys(name, address):
                q = self._attempts.get(k)
                if q is not None and reserved in q:
                    q.remove(reserved)
                    if not q:
                        del self._attempts[k]


_API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.DOTALL)
LOGIN_SCRIPT = b"""<script>
(() => {
  // Gradio's form ignores answers other than 200 and 400: show the throttle's reason.
  const fetch0 = window.fetch;
  const show = (text) => {
    let note = document.getElementById("login-refusal");
    if (!note) {
      note = document.createElement("div");
      note.id = "login-refusal";
      note.setAttribute("role", "alert");
      document.body.appendChild(note);
    }
    note.textContent = text;
    note.hidden = !text;
  };
  window.fetch = async (...args) => {
    const response = await fetch0(...args);
    const url = new URL(String(args[0] && args[0].url || args[0]), location.href);
    if (/\\/login\\/?$/.test(url.pathname)) {
      let text = "";
      if (response.status === 429) {
        text = "Too many failed log-ins: wait a few minutes and try again.";
        try { text = (await response.clone().json()).detail || text; } catch (e) {}
      }
      show(text);
    }
    return response;
  };
})();
</script>
<style>
#login-refusal { position: fixed; top: 1rem; left: 50%; transform: translateX(-50%);
  max-width: 36rem; padding: 0.75rem 1rem; border-radius: 0.5rem; z-index: 1000;
  background: #fff4e5; color: #7a3e00; border: 1px solid #f0a04b; font: 1rem sans-serif; }
</style>
"""


CROSS_SITE = "Refused: the request did not come from this app's page."
# The largest request body any route takes: a log-in form, an event's JSON, a vote (64 kB,
# collect/app_vote.py); no route takes a file. Larger ones are refused before they are read,
# logged in or not (a 200 MB body sent without a session was read and parsed before its 401).
MAX_REQUEST_BODY = 1024 * 1024
TOO_LARGE = f"Refused: a request body is at most {MAX_REQUEST_BODY // 1024} kB."


def same_origin(headers: Headers) -> bool:
    """The page that sent the request is this server's (or the request names no page: a
    same-origin GET, or a client that is not a browser): its Origin names the Host the request
    was sent to. Only Host: a page's script can add an X-Forwarded-Host header of its choosing
    (Gradio's CORS layer, outside this check, answers the preflight that allows it for a page
    on another port of the same host), so a proxy must pass the public host as Host."""
    origin = headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == headers.get("host", "")


def lax_cookies(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Response headers with every Set-Cookie's SameSite=None made SameSite=Lax."""
    return [(k, re.sub(rb"(?i)samesite=none", b"SameSite=Lax", v) if k.lower() == b"set-cookie" else v)
            for k, v in headers]


def session_token(cookies, cookie_id: str) -> str | None:
    """The log-in session token in a request's cookies: Gradio sets it twice, as a secure
    cookie and as one for plain-HTTP use."""
    return cookies.get(f"access-token-{cookie_id}") or \
        cookies.get(f"access-token-unsecure-{cookie_id}")


def _logged_in(scope) -> bool:
    """The same test as Gradio's get_current_user: a cookie naming a known session."""
    app = scope.get("app")
    tokens, cookie_id = getattr(app, "tokens", None), getattr(app, "cookie_id", None)
    if tokens is None or cookie_id is None:
        return False
    return session_token(Request(scope).cookies, cookie_id) in tokens


def login_page(html: bytes) -> bytes:
    """Gradio's log-in page without the API schema, with the refusal script."""
    html = _API_INFO.sub(b"window.gradio_api_info = null;</script>", html, count=1)
    return html.replace(b"</head>", LOGIN_SCRIPT + b"</head>", 1)


def _logout_from_elsewhere(scope, headers: Headers) -> bool:
    """Gradio's log-out is a GET that ends every session of the user, and a GET carries no Origin:
    a link or an <img> on another site's page (or on another port of this host) would log people
    out. The browser says where it came from in Sec-Fetch-Site; a request without it (not a
    browser, or an old one) passes."""
    return scope["path"] == "/logout" and headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none")


def _too_large(headers: Headers) -> bool:
    try:
        return int(headers.get("content-length") or 0) > MAX_REQUEST_BODY
    except ValueError:
        return True


def _capped(receive):
    """`receive` that ends the request once its body passes MAX_REQUEST_BODY (a chunked body
    says no length up front): the app sees a client that went away, and reads no further."""
    seen = 0

    async def wrapped():
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > MAX_REQUEST_BODY:
                return {"type": "http.disconnect"}
        return message
    return wrapped


class Gate:
    """ASGI middleware: see the module's docstring."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        if not same_origin(headers) or _logout_from_elsewhere(scope, headers):
            return await JSONResponse({"detail": CROSS_SITE}, 403)(scope, receive, send)
        if _too_large(headers):
            return await JSONResponse({"detail": TOO_LARGE}, 413)(scope, receive, send)
        receive = _capped(receive)
        client = scope.get("client")
        token = CLIENT_ADDRESS.set(client[0] if client else "")

        async def send_lax(message):
            if message["type"] == "http.response.start":
                message["headers"] = lax_cookies(list(message.get("headers", [])))
            await send(message)

        try:
            if scope["method"] == "GET" and scope["path"] in ("", "/") \
                    and not _logged_in(scope):
                await self._rewrite(scope, receive, send_lax)
            else:
                await self.app(scope, receive, send_lax)
        finally:
            CLIENT_ADDRESS.reset(token)

    async def _rewrite(self, scope, receive, send):
        start, chunks = None, []

        async def hold(message):
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    body = b"".join(chunks)
                    headers = dict(start["headers"])
                    if start["status"] == 200 and headers.get(b"content-type", b"") \
                            .startswith(b"text/html"):
                        body = login_page(body)
                    start["headers"] = [(k, v) for k, v in start["headers"]
                                        if k != b"content-length"] + \
                        [(b"content-length", str(len(body)).encode())]
                    await send(start)
                    await send({"type": "http.response.body", "body": body})
            else:
                await send(message)

        await self.app(scope, receive, hold)
