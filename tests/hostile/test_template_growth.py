"""Templates that try to allocate gigabytes in one expression are refused before they do.

Each hostile template is rendered by ``CompiledCampaign`` in a child process of its own
(so the peak memory measured is the render's, not the test run's); the child reports
the outcome and its peak RSS (``VmHWM``). Every one must fail as a ``RenderError``
or ``ContentError`` naming the bound, with the process's peak under 200 MB — before the
fix, ``('a'*100000)|replace('a','b'*100000)`` hit a MemoryError at a 1.5 GB cap and the
others built 30–100 MB each. A control renders ordinary templates that use the same
filters and methods with sensible sizes.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.helpers import TEST_LINKS

CHILD = r"""
import json, sys
from newsletter_queue.jobs import Recipient
from newsletter_queue.services.render import CompiledCampaign, Content, ContentError, RenderError
from newsletter_queue.services.links import Links
from newsletter_queue.services.signing import Signer
TEST_LINKS = Links(Signer(b"k" * 32), unsubscribe_base_url="http://127.0.0.1:8000/unsubscribe")
template = sys.stdin.read()
outcome = "rendered"
try:
    campaign = CompiledCampaign("t", "c", Content(subject="Hi", html=None, text=template),
                                default_from="News <news@example.com>",
                                links=TEST_LINKS)
    campaign.render(Recipient(email="a@example.com", name="A"))
except (RenderError, ContentError) as exc:
    outcome = f"{type(exc).__name__}: {exc}"
except MemoryError:
    outcome = "MemoryError"
# VmHWM: this process's own peak (ru_maxrss would carry the parent's over fork + exec)
status = open("/proc/self/status").read()
peak_kb = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])
print(json.dumps({"outcome": outcome, "peak_mb": peak_kb / 1024}))
"""

# Each would build at least 30 MB (most far more) in one step without the bounds.
HOSTILE = {
    "replace-filter": "{{ ('a'*100000)|replace('a','b'*100000) }}",
    "replace-method": "{{ ('a'*100000).replace('a','b'*100000) }}",
    "percent-width": "{{ '%030000000d' % 1 }}",
    "percent-precision": "{{ '%.30000000f' % 1 }}",
    "percent-star": "{{ '%*d' % (30000000, 1) }}",
    "format-filter": "{{ '%030000000d'|format(1) }}",
    "ljust": "{{ 'a'.ljust(30000000) }}",
    "rjust": "{{ 'a'.rjust(30000000) }}",
    "center-method": "{{ 'a'.center(30000000) }}",
    "center-filter": "{{ 'a'|center(30000000) }}",
    "zfill": "{{ '1'.zfill(30000000) }}",
    "expandtabs": "{{ ('\t' * 1000).expandtabs(100000) }}",
    "indent-filter": "{{ ('a\n' * 50000)|indent(1000) }}",
    "str-format-width": "{{ '{:>30000000}'.format(1) }}",
    "str-format-nested": "{{ '{:>{}}'.format(1, 30000000) }}",
    "format-map": "{{ '{x:>30000000}'.format_map({'x': 1}) }}",
    "join-method-separator": "{{ ('x' * 100000).join(['a'] * 1000) }}",
    "join-filter-separator": "{{ (['a'] * 1000)|join('x' * 100000) }}",
    "concat-chain": ("{% set a = 'x' * 100000 %}{% set b = a ~ a ~ a ~ a ~ a ~ a ~ a ~ a %}"
                     "{% set c = b ~ b ~ b ~ b ~ b ~ b ~ b ~ b %}"
                     "{% set d = c ~ c ~ c ~ c ~ c ~ c ~ c ~ c %}{{ d|length }}"),
    "namespace-doubling": ("{% set ns = namespace(x='x' * 1000) %}"
                           "{% for i in range(40) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}"
                           "{{ ns.x|length }}"),
    "mul": "{{ 'x' * 50000000 }}",
    "pow": "{{ 9 ** (9 ** 8) }}",
}

ORDINARY = ("{{ name|center(20) }}|{{ 'a-b'|replace('-', '+') }}|{{ '%05d' % 42 }}|"
            "{{ '{:>6}'.format('x') }}|{{ ['a', 'b']|join(', ') }}|{{ 'x'.ljust(3) }}|"
            "{{ '%s!'|format(name) }}|{{ 'ab' ~ 'cd' }}|{{ ('l1\nl2')|indent(2) }}")


def _render_in_child(template: str) -> dict[str, object]:
    result = subprocess.run([sys.executable, "-c", CHILD], input=template, text=True,
                            capture_output=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_growing_template_is_refused_before_it_allocates(name: str) -> None:
    report = _render_in_child(HOSTILE[name])
    outcome = str(report["outcome"])
    assert outcome.startswith(("RenderError", "ContentError")), outcome
    assert any(word in outcome for word in ("at most", "too large", "not allowed",
                                            "too long")), outcome
    assert float(report["peak_mb"]) < 200, report  # bounded before the allocation


def test_ordinary_uses_of_the_same_filters_still_render() -> None:
    from newsletter_queue.jobs import Recipient
    from newsletter_queue.services.render import CompiledCampaign, Content

    campaign = CompiledCampaign("t", "c", Content(subject="Hi", text=ORDINARY),
                                default_from="News <news@example.com>",
                                links=TEST_LINKS)
    _mid, message = campaign.render(Recipient(email="a@example.com", name="Ann"))
    body = message.decode()
    for expected in ("        Ann         ", "a+b", "00042", "     x", "a, b", "x  ",
                     "Ann!", "abcd", "l1\r\n  l2"):
        assert expected in body, (expected, body[-400:])
