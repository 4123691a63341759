"""Who may call the API: loopback binding, bearer tokens, Host and Origin checks.

The rule (also in docs/operating.md, "Who may call it"):

1. The API binds to 127.0.0.1 unless told otherwise. Binding to any other address
   without ``NLQ_API_TOKEN`` is refused at start-up (``check_bind``).
2. A request that arrives on a non-loopback address needs
   ``Authorization: Bearer <NLQ_API_TOKEN>`` — every method, every path except the
   dashboard's static shell (``/dashboard`` and its CSS/JS), which holds no data: a
   browser cannot send a bearer header when it loads a page, so the page asks for the
   token and sends it with every API call it makes.
3. On loopback, reads (GET/HEAD) are open; every other method (POST …) needs the token
   **when one is configured**. With no token configured, loopback POSTs are allowed —
   that is what lets the dashboard work out of the box — but only from the API's own
   origin or from no browser at all (CSRF, ``same_origin_or_no_browser``). Browsers
   send ``Origin`` on every POST and ``Sec-Fetch-Site`` on every request; command-line
   clients (curl, httpx) send neither. So a POST is refused when ``Sec-Fetch-Site`` is
   anything but ``same-origin`` (``same-site`` included: another port of localhost is
   another origin), or when ``Origin`` is present and is not exactly this API's
   scheme-less ``host:port`` — ``null`` (a sandboxed frame, a ``file://`` page, a
   no-referrer form) included. A cross-origin page cannot make a browser send the
   bearer header either (no CORS headers are ever sent), so with a token configured
   the token is the guard.
4. On loopback, the ``Host`` header must name a loopback host (``localhost``,
   ``127.x.x.x``, ``[::1]``), so a DNS-rebinding page cannot reach the API through a
   name it controls.
5. The public link routes (``PUBLIC_PATHS``: the one-click unsubscribe, ``api.public``)
   are exempt from all of the above: they are meant for the whole internet, through the
   platform's own domain, and act only on input signed with the signing secret.

Tokens are compared in constant time, and no response ever echoes what was sent.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..config import MIN_PUBLIC_TOKEN_CHARS, Settings
from ..errors import ConfigurationError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
STATIC_SHELL = ("/dashboard", "/dashboard/static/")
PUBLIC_PATHS = frozenset({"/unsubscribe"})
PUBLIC_METHODS = frozenset({"GET", "HEAD", "POST"})


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (a name or address, maybe ``[v6]``) is a loopback address."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_only(value: str) -> str:
    """``Host`` header value without its port (IPv6 brackets kept intact)."""
    if value.startswith("["):
        return value.split("]", 1)[0] + "]"
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def check_bind(settings: Settings, host: str) -> None:
    """Refuse to serve on a non-loopback address without a token.

    Raises:
        ConfigurationError: ``host`` is not loopback and ``NLQ_API_TOKEN`` is unset or
            shorter than ``MIN_PUBLIC_TOKEN_CHARS`` (blank tokens never get this far:
            the settings refuse them).
    """
    if is_loopback(host):
        return
    token = settings.api_token
    if token is None:
        raise ConfigurationError(
            f"refusing to bind the API to {host!r}: it is not a loopback address and "
            "NLQ_API_TOKEN is not set. Set NLQ_API_TOKEN (clients then send "
            "'Authorization: Bearer <token>') or bind to 127.0.0.1.")
    if len(token.get_secret_value().strip()) < MIN_PUBLIC_TOKEN_CHARS:
        raise ConfigurationError(
            f"refusing to bind the API to {host!r}: NLQ_API_TOKEN is shorter than "
            f"{MIN_PUBLIC_TOKEN_CHARS} characters, too easy to guess for an address "
            "beyond loopback (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")


@dataclass(frozen=True)
class Denied:
    """Why a request is refused: HTTP status and a message that echoes nothing."""

    status: int
    message: str


def is_static_shell(method: str, path: str) -> bool:
    """The dashboard page and its assets: no data in them, readable without a token."""
    return method.upper() in ("GET", "HEAD") and (
        path == STATIC_SHELL[0] or path.startswith(STATIC_SHELL[1]))


def _netloc(host: str) -> str:
    """``host[:port]`` lower-cased, without the scheme's default port."""
    host = host.strip().lower()
    for default in (":80", ":443"):
        if host.endswith(default):
            return host[: -len(default)]
    return host


def same_origin_or_no_browser(headers: Mapping[str, str]) -> bool:
    """Whether a state-changing request came from this API's own page or from no browser.

    ``Sec-Fetch-Site`` (every request of a current browser) must be ``same-origin``;
    ``Origin`` (every POST of a browser), when present, must name exactly the host and
    port of the ``Host`` header. Neither header: not a browser (curl), allowed.
    """
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.strip().lower() != "same-origin":
        return False
    origin = headers.get("origin")
    if origin is None:
        return True
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False  # "null", file://, anything opaque
    return _netloc(parts.netloc) == _netloc(headers.get("host", ""))


def authorize(settings: Settings, method: str, server_host: str | None,
              headers: Mapping[str, str], path: str = "") -> Denied | None:
    """Apply the rule above to one request; ``None`` means allowed."""
    if path in PUBLIC_PATHS and method.upper() in PUBLIC_METHODS:
        return None  # signed input only (rule 5)
    local = is_loopback(server_host)
    if local and not is_loopback(_host_only(headers.get("host", ""))):
        return Denied(403, "the Host header must name a loopback host (localhost, "
                           "127.0.0.1 or [::1]) when the API is bound to loopback")
    if is_static_shell(method, path):
        return None
    token = settings.api_token
    needs_token = not local or method.upper() not in SAFE_METHODS
    if not needs_token:
        return None
    if token is None:
        if not local:
            return Denied(403, "this API is reachable on a non-loopback address but "
                               "NLQ_API_TOKEN is not set; refusing every request")
        if not same_origin_or_no_browser(headers):
            return Denied(403, "cross-site request refused: only a page of this API's own "
                               "origin, or a client that is not a browser, may change state")
        return None
    scheme, _, value = headers.get("authorization", "").partition(" ")
    sent = value.strip().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(
            sent, token.get_secret_value().encode()):
        return Denied(401, "missing or invalid bearer token: send 'Authorization: Bearer "
                           "<NLQ_API_TOKEN>'")
    return None
