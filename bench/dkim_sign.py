"""Benchmark: DKIM-signing rendered campaign messages in one process (no Redis, no SMTP).

    python bench/dkim_sign.py [--messages 2000] [--bits 2048] [--size 2048]

Renders one campaign message of about ``--size`` bytes (UTF-8 subject and sender, HTML
and text parts, the List-Unsubscribe pair), makes an RSA key of ``--bits``, then times
``DkimSigner.sign`` (what the email processor calls per message: dkimpy's
canonicalisation and header hashing, OpenSSL's RSA) over ``--messages`` messages, and
dkimpy's own ``dkim.sign`` (which parses the PEM key and computes RSA in pure Python)
over a tenth as many, for comparison. Every signature is checked once with
``dkim.verify``.

Prints, as its last stdout line, one JSON object: ``bits``, ``message_bytes``,
``signer_per_s`` and ``signer_ms`` (wall clock), ``signer_cpu_ms`` (this process's CPU
time per message, which other load on the machine does not inflate), the same three for
``dkimpy_sign``, and ``speedup`` (of the CPU times).
"""

from __future__ import annotations

import argparse
import json
import time
from base64 import b64encode

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from newsletter_queue.config import DKIM_DEFAULT_HEADERS, load_settings
from newsletter_queue.jobs import Recipient
from newsletter_queue.services.dkim import DkimSigner
from newsletter_queue.services.links import Links
from newsletter_queue.services.render import CompiledCampaign, Content
from newsletter_queue.services.signing import Signer

LINKS = Links(Signer(b"bench-signing-secret-0123456789"),
              unsubscribe_base_url="https://news.example.com/unsubscribe")


def message_of(size: int) -> bytes:
    """A rendered campaign message of about ``size`` bytes."""
    def render(words: int) -> bytes:
        body = " ".join(["Neuigkeiten aus dem Café"] * words)
        campaign = CompiledCampaign(
            "bench", "c1", Content(subject="Grüße, {{ name }}: Ausgabe Nr. 12",
                                   html=f"<h1>Hallo {{{{ name }}}}</h1><p>{body}</p>",
                                   from_addr="Zoë's Café <news@example.com>"),
            default_from="x@example.com", links=LINKS)
        return campaign.render(Recipient(email="renee@example.org", name="Renée Müller"))[1]

    words = 1
    while len(render(words + 1)) <= size:
        words += 1
    return render(words)


def timed(fn: object, count: int) -> tuple[float, float]:
    """(calls per wall-clock second, CPU milliseconds per call)."""
    assert callable(fn)
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        fn()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return count / wall, cpu * 1000 / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--bits", type=int, default=2048)
    parser.add_argument("--size", type=int, default=2048)
    args = parser.parse_args()
    key = rsa.generate_private_key(public_exponent=65537, key_size=args.bits)
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    settings = load_settings(_env_file=None, dkim_domain="example.com",
                             dkim_selector="bench", dkim_private_key=pem.decode())
    signer = DkimSigner.from_settings(settings)
    assert signer is not None
    message = message_of(args.size)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)

    def dns(name: bytes, timeout: float = 5) -> bytes:
        return b"v=DKIM1; k=rsa; p=" + b64encode(der)

    headers = [h.lower().encode() for h in DKIM_DEFAULT_HEADERS]

    def reference() -> bytes:
        return bytes(dkim.sign(message, b"bench", b"example.com", pem,
                               canonicalize=(b"relaxed", b"relaxed"),
                               include_headers=headers))

    assert dkim.verify(signer.sign("bench", message), dnsfunc=dns)
    assert dkim.verify(reference() + message, dnsfunc=dns)
    ours, ours_cpu = timed(lambda: signer.sign("bench", message), args.messages)
    theirs, theirs_cpu = timed(reference, max(args.messages // 10, 1))
    print(json.dumps({
        "bits": args.bits, "message_bytes": len(message),
        "signer_per_s": round(ours), "signer_ms": round(1000 / ours, 3),
        "signer_cpu_ms": round(ours_cpu, 3),
        "dkimpy_sign_per_s": round(theirs, 1), "dkimpy_sign_ms": round(1000 / theirs, 2),
        "dkimpy_sign_cpu_ms": round(theirs_cpu, 2),
        "speedup": round(theirs_cpu / ours_cpu, 1)}))


if __name__ == "__main__":
    main()
