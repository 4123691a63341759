"""``services.signing``: signatures bind purpose and every part; a blank secret is refused;
the generated secret is private, made once, and the same for processes starting together."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest

from newsletter_queue.config import Settings
from newsletter_queue.errors import ConfigurationError
from newsletter_queue.services.signing import SECRET_FILE, Signer, load_secret


def _settings(tmp_path: Path, secret: str | None = None) -> Settings:
    return Settings(state_dir=tmp_path, signing_secret=secret)


def test_a_signature_binds_the_purpose_and_every_part() -> None:
    signer = Signer(b"k" * 32)
    sig = signer.sign("unsubscribe", "t1", "june", "ann@example.com")
    assert len(sig) == 22
    assert signer.verify(sig, "unsubscribe", "t1", "june", "ann@example.com")
    assert not signer.verify(sig, "open", "t1", "june", "ann@example.com")
    assert not signer.verify(sig, "unsubscribe", "t2", "june", "ann@example.com")
    assert not signer.verify(sig, "unsubscribe", "t1", "june", "bob@example.com")
    # Parts cannot be shifted across the separator.
    assert not signer.verify(sig, "unsubscribe", "t1june", "", "ann@example.com")
    assert not Signer(b"x" * 32).verify(sig, "unsubscribe", "t1", "june", "ann@example.com")
    for forged in ("", "A" * 22, sig[:-1], sig + "A", "!!!!", "é" * 22):
        assert not signer.verify(forged, "unsubscribe", "t1", "june", "ann@example.com")


@pytest.mark.parametrize("secret", ["", "   ", "short"])
def test_a_blank_or_short_secret_is_refused(tmp_path: Path, secret: str) -> None:
    with pytest.raises(ConfigurationError, match="NLQ_SIGNING_SECRET"):
        load_secret(_settings(tmp_path, secret))
    assert not (tmp_path / SECRET_FILE).exists()
    with pytest.raises(ConfigurationError):
        Signer(secret.encode())


def test_the_setting_wins_over_the_file(tmp_path: Path) -> None:
    assert load_secret(_settings(tmp_path, "a-long-enough-secret-value")) == \
        b"a-long-enough-secret-value"
    assert not (tmp_path / SECRET_FILE).exists()


def test_a_generated_secret_is_private_and_kept(tmp_path: Path) -> None:
    first = load_secret(_settings(tmp_path))
    path = tmp_path / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert load_secret(_settings(tmp_path)) == first
    assert [p.name for p in tmp_path.iterdir()] == [SECRET_FILE]  # no temporary left


def test_a_blank_secret_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / SECRET_FILE).write_text("\n")
    with pytest.raises(ConfigurationError, match="delete the file"):
        load_secret(_settings(tmp_path))


def _load_in_child(state_dir: str, barrier: object, out: object) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    out.put(load_secret(Settings(state_dir=Path(state_dir))))  # type: ignore[attr-defined]


def test_processes_starting_together_agree_on_one_secret(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    count = 6
    barrier, out = ctx.Barrier(count), ctx.Queue()
    children = [ctx.Process(target=_load_in_child, args=(str(tmp_path), barrier, out))
                for _ in range(count)]
    for child in children:
        child.start()
    secrets = {out.get(timeout=120) for _ in children}
    for child in children:
        child.join(timeout=120)
        assert child.exitcode == 0
    assert len(secrets) == 1
    assert secrets == {(tmp_path / SECRET_FILE).read_text().strip().encode()}
