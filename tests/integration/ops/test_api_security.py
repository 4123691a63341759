"""Who may call the API (the rule in api/security.py and docs/operating.md) and that no
secret ever appears in a response."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from newsletter_queue.api import create_app, is_loopback
from newsletter_queue.config import Settings, load_settings
from newsletter_queue.errors import ConfigurationError
from tests.conftest import make_settings

TOKEN = "tok-Zq81-very-secret"


@pytest.fixture
def with_token(redis_url: str, prefix: str, tmp_path: Path, redis_client: aioredis.Redis
               ) -> Settings:
    return make_settings(redis_url=redis_url, key_prefix=prefix, state_dir=tmp_path,
                         api_token=TOKEN)


def client_for(settings: Settings, base_url: str = "http://127.0.0.1:8000",
               **headers: str) -> httpx.AsyncClient:
    app = create_app(settings, host="0.0.0.0" if settings.api_token else "127.0.0.1")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url,
                             headers=headers)


def test_binding_outside_loopback_needs_a_token(settings: Settings, with_token: Settings
                                                ) -> None:
    for host in ("0.0.0.0", "192.168.1.10", "::", "example.com"):
        with pytest.raises(ConfigurationError, match="NLQ_API_TOKEN"):
            create_app(settings, host=host)
    create_app(with_token, host="0.0.0.0")
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        create_app(settings, host=host)
    assert is_loopback("[::1]")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback(None)


async def test_no_token_loopback_allows_same_origin_posts(settings: Settings) -> None:
    async with client_for(settings) as client:
        assert (await client.get("/api/dev/queue?action=stats")).status_code == 200
        r = await client.post("/api/dev/queue?action=pause&queue=email")
        assert r.status_code == 200
        r = await client.post("/api/dev/queue?action=resume&queue=email",
                              headers={"Origin": "http://127.0.0.1:8000"})
        assert r.status_code == 200
        r = await client.post("/api/dev/queue?action=pause&queue=email",
                              headers={"Origin": "https://evil.example"})
        assert r.status_code == 403
        assert "cross-site" in r.json()["error"]
        r = await client.get("/api/dev/queue?action=stats",
                             headers={"Host": "rebound.evil.example:8000"})
        assert r.status_code == 403
        assert "Host header" in r.json()["error"]


async def test_configured_token_is_required_for_posts_on_loopback(
        with_token: Settings) -> None:
    async with client_for(with_token) as client:
        assert (await client.get("/api/dev/queue?action=stats")).status_code == 200
        r = await client.post("/api/dev/queue?action=pause&queue=email")
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        r = await client.post("/api/dev/queue?action=pause&queue=email",
                              headers={"Authorization": "Bearer wrong-guess-4711"})
        assert r.status_code == 401
        assert "wrong-guess-4711" not in r.text
        assert TOKEN not in r.text
        r = await client.post("/api/dev/queue?action=pause&queue=email",
                              headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200
        assert r.json()["paused"] is True
        r = await client.post("/api/dev/queue?action=resume&queue=email",
                              headers={"Authorization": f"bearer   {TOKEN}"})
        assert r.status_code == 200


async def test_every_request_on_a_public_address_needs_the_token(
        with_token: Settings, settings: Settings) -> None:
    async with client_for(with_token, "http://10.1.2.3:8000") as client:
        for path in ("/healthz", "/metrics", "/api/dev/queue?action=stats",
                     "/api/dev/mail", "/openapi.json"):
            assert (await client.get(path)).status_code == 401, path
            ok = await client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert ok.status_code == 200, path
        # The page shell holds no data; a browser loads it, then sends the token itself.
        for path in ("/dashboard", "/dashboard/static/dashboard.js"):
            assert (await client.get(path)).status_code == 200, path
        assert (await client.post("/dashboard")).status_code == 401
    # A request reaching a non-loopback address of an app without a token is refused,
    # even if the app was (mis)configured as loopback.
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://10.1.2.3:8000") as client:
        r = await client.get("/api/dev/queue?action=stats")
        assert r.status_code == 403
        assert "NLQ_API_TOKEN is not set" in r.json()["error"]


async def test_no_secret_in_any_response(redis_url: str, prefix: str, tmp_path: Path,
                                         redis_client: aioredis.Redis) -> None:
    secrets = {"api": TOKEN, "smtp": "smtpPW-77x", "ai": "sk-aiKEY-99y", "db": "dbPW-55z"}
    settings = make_settings(
        redis_url=redis_url, key_prefix=prefix, state_dir=tmp_path, api_token=secrets["api"],
        smtp_url=f"smtp://mailer:{secrets['smtp']}@127.0.0.1:2525",
        ai_api_key=secrets["ai"], ai_base_url="http://127.0.0.1:9/v1",
        database_url=f"postgresql+asyncpg://app:{secrets['db']}@127.0.0.1:1/nlq")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    bodies: list[str] = []
    async with client_for(settings) as client:
        assert (await client.post("/api/dev/queue?action=test", headers=auth)).status_code == 200
        for action in ("dashboard", "stats", "health", "metrics", "errors", "report"):
            bodies.append((await client.get(f"/api/dev/queue?action={action}")).text)
        bodies.append((await client.get("/api/dev/queue?action=inspect&queue=email")).text)
        bodies.append((await client.get("/api/dev/queue?action=report&format=md")).text)
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/dashboard",
                     "/api/dev/mail", "/api/dev/workers", "/api/dev/dead-letters",
                     "/api/dev/queues/email/jobs", "/api/dev/queues/email/jobs/1"):
            bodies.append((await client.get(path)).text)
        bodies.append((await client.post("/api/dev/queue?action=pause&queue=email",
                                         headers={"Authorization": "Bearer nope"})).text)
    assert len(bodies) == 19
    for body in bodies:
        for name, secret in secrets.items():
            assert secret not in body, f"{name} secret leaked"


def test_the_dashboard_page_is_self_contained() -> None:
    static = Path(__file__).resolve().parents[3] / "src/newsletter_queue/api/static"
    text = "".join(p.read_text() for p in static.iterdir())
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in text
    assert "innerHTML" not in text




@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_a_blank_token_is_refused_from_the_environment_and_dotenv(
        blank: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NLQ_API_TOKEN", blank)
    with pytest.raises(ConfigurationError, match="NLQ_API_TOKEN: set but blank"):
        load_settings(_env_file=None)
    monkeypatch.delenv("NLQ_API_TOKEN")
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"NLQ_API_TOKEN={blank}\n")
    with pytest.raises(ConfigurationError, match="set but blank"):
        load_settings(_env_file=dotenv)


def test_a_blank_token_cannot_open_the_api_on_a_public_bind(
        redis_url: str, tmp_path: Path) -> None:
    """The attack: NLQ_API_TOKEN= (empty) used to pass check_bind on 0.0.0.0 and let
    ``Authorization: Bearer `` through on every route. Now the process does not start."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NLQ_")}
    env.update(REDIS_URL=redis_url, NLQ_API_TOKEN="", NLQ_STATE_DIR=str(tmp_path))
    port = _free_port()
    result = subprocess.run(
        [sys.executable, "-m", "newsletter_queue", "api", "--host", "0.0.0.0",
         "--port", str(port)], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60, check=False)
    assert result.returncode == 1
    assert "NLQ_API_TOKEN: set but blank" in result.stderr
    assert "Traceback" not in result.stderr
    # nothing listens there
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port),
                                                                         timeout=2):
        pass


def test_a_short_token_is_refused_for_a_public_bind(settings: Settings) -> None:
    short = settings.model_copy(update={"api_token": SecretStr("x" * 15)})
    with pytest.raises(ConfigurationError, match="shorter than 16 characters"):
        create_app(short, host="0.0.0.0")
    create_app(short, host="127.0.0.1")  # loopback: a short token still guards POSTs
    long_enough = settings.model_copy(update={"api_token": SecretStr("x" * 16)})
    create_app(long_enough, host="0.0.0.0")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("headers", [
    {"Origin": "null"},
    {"Origin": "http://127.0.0.1:9999"},
    {"Origin": "http://localhost:1234"},
    {"Origin": "http://evil.localhost:8000"},
    {"Origin": "file://"},
    {"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-site"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
])
async def test_no_token_loopback_refuses_every_other_origin(
        settings: Settings, redis_client: aioredis.Redis, headers: dict[str, str]) -> None:
    async with client_for(settings) as client:
        r = await client.post("/api/dev/queue?action=pause&queue=email", headers=headers)
        assert r.status_code == 403, r.text
        assert "cross-site request refused" in r.json()["error"]
        assert not await redis_client.exists(f"{settings.key_prefix}:email:meta") or \
            await redis_client.hget(f"{settings.key_prefix}:email:meta", "paused") is None
        # this API's own page, and a client that is no browser, are allowed
        same = {"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"}
        assert (await client.post("/api/dev/queue?action=pause&queue=ai",
                                  headers=same)).status_code == 200
        assert (await client.post("/api/dev/queue?action=resume&queue=ai")).status_code == 200
