"""Template injection in campaign content: the sandbox holds, through the real pipeline.

Classic Jinja2 server-side template injection payloads are put in the subject, HTML and
text of a campaign — inline (transactional job) and stored (campaign in the database) —
and sent through the engine workers to the SMTP sink. Each payload that tries to execute
code would create a marker file; a control test shows each really does so on a plain
``jinja2.Environment``. In the system: the recipient fails with the sandbox's reason, no
marker, no mail, and the workers keep running. A template that does not compile fails
the job as unrecoverable. Template code *in recipient data* is never evaluated.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import jinja2
import pytest

from newsletter_queue.jobs import Recipient
from newsletter_queue.services.render import CompiledCampaign, Content, ContentError, RenderError
from newsletter_queue.services.store import CampaignRecord
from tests.hostile.conftest import Engine
from tests.support.helpers import TEST_LINKS

FIELDS = ("subject", "html", "text")


def payloads(marker_dir: Path) -> dict[str, str]:
    """name → template; those that would run code create ``marker_dir/<name>``."""
    m = {name: str(marker_dir / name) for name in
         ("subclasses", "cycler-os", "self-builtins", "lipsum-os", "namespace-os",
          "joiner-os")}
    return {
        "str-class": "{{ ''.__class__ }}",
        "self-init-globals": "{{ self.__init__.__globals__ }}",
        "subclasses": ("{% for c in [].__class__.__base__.__subclasses__() %}"
                       "{% if c.__name__ == 'catch_warnings' %}"
                       f"{{{{ c()._module.__builtins__['open']('{m['subclasses']}', 'w')"
                       ".write('x') }}{% endif %}{% endfor %}"),
        "cycler-os": f"{{{{ cycler.__init__.__globals__.os.mkdir('{m['cycler-os']}') }}}}",
        "self-builtins": ("{{ self.__init__.__globals__.__builtins__['open']"
                          f"('{m['self-builtins']}', 'w').write('x') }}}}"),
        "lipsum-os": f"{{{{ lipsum.__globals__['os'].mkdir('{m['lipsum-os']}') }}}}",
        "namespace-os": f"{{{{ namespace.__init__.__globals__.os.mkdir('{m['namespace-os']}') }}}}",
        "joiner-os": f"{{{{ joiner.__init__.__globals__.os.mkdir('{m['joiner-os']}') }}}}",
        "builtins-name": "{{ __builtins__['open']('/etc/passwd').read() }}",
        "data-mro": "{{ personalizations.__class__.__mro__[1].__subclasses__() }}",
        "getitem-dunder": "{{ name['__class__']['__mro__'] }}",
        "attr-filter": "{{ ()|attr('__class__')|attr('__base__')|attr('__subclasses__')() }}",
        "format-attr": "{{ '{0.__class__.__mro__}'.format(name) }}",
        "include-file": "{% include '/etc/passwd' %}",
        "import-module": "{% import 'os' as os %}{{ os.getcwd() }}",
    }


CODE_RUNNING = ("subclasses", "cycler-os", "self-builtins", "lipsum-os", "namespace-os",
                "joiner-os")


def test_control_the_payloads_run_code_on_a_plain_jinja2(tmp_path: Path) -> None:
    """Without the sandbox these payloads do create the marker: they are live."""
    env = jinja2.Environment()  # noqa: S701 - deliberately unsafe, to prove the payloads
    for name in CODE_RUNNING:
        env.from_string(payloads(tmp_path)[name]).render(name="n", personalizations={})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(CODE_RUNNING)


def _content(field: str, payload: str) -> dict[str, str]:
    content = {"subject": "Hello", "html": "<p>Hello</p>", "text": "Hello"}
    content[field] = payload
    return content


async def test_injection_in_inline_and_stored_content_fails_the_recipient_only(
    engine: Engine, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    store = engine.services.store
    assert store is not None
    jobs: dict[tuple[str, str, str], str] = {}
    for name, payload in payloads(markers).items():
        for field in FIELDS:
            # inline: a transactional job carries the content
            key = f"{name}-{field}"
            job = await engine.manager.schedule_email_job("transactional", {
                "campaignId": f"in-{key}", "tenantId": "t-ssti",
                "recipients": [{"email": f"in-{key}@example.com", "name": "Reader"}],
                "content": _content(field, payload)})
            jobs[(name, field, "inline")] = job.id
            # stored: a campaign in the database, sent in a batch
            await store.upsert_campaign(CampaignRecord(
                tenant_id="t-ssti", campaign_id=f"st-{key}", **_content(field, payload)))
            [batch] = await engine.manager.schedule_batch_email_sending(
                f"st-{key}", "t-ssti", [{"email": f"st-{key}@example.com", "name": "R"}])
            jobs[(name, field, "stored")] = batch.id
    results = await asyncio.gather(*(engine.finished("email", job_id)
                                     for job_id in jobs.values()))
    problems: dict[str, Any] = {}
    for (name, field, mode), info in zip(jobs, results, strict=True):
        value = info.return_value or {}
        errors = value.get("errors", [])
        ok = (info.state == "completed" and value.get("failed") == 1
              and value.get("sent") == 0 and len(errors) == 1
              and "template error for" in errors[0])
        if not ok:
            problems[f"{name}/{field}/{mode}"] = (info.state, info.failed_reason, value)
    assert problems == {}
    assert list(markers.iterdir()) == []  # no code ran
    assert sum(engine.sink.handler.counts.values()) == 0  # nothing was sent
    failed = await store.list_deliveries("t-ssti", "st-str-class-subject", "failed")
    assert "unsafe" in (failed[0].smtp_response or "")
    await engine.assert_alive()


@pytest.mark.parametrize("template", [
    "{% for %}", "{{ ''.__class__ ", "{% if %}{% endfor %}", "{{ name | no_such_filter }}",
    "{% extends %}",
])
async def test_template_that_does_not_compile_fails_the_job_unrecoverable(
    engine: Engine, template: str
) -> None:
    job = await engine.manager.schedule_email_job("transactional", {
        "campaignId": "broken", "tenantId": "t-ssti",
        "recipients": [{"email": "x@example.com"}],
        "content": {"subject": "Hi", "text": template}}, {"attempts": 3})
    info = await engine.finished("email", job.id)
    assert info.state == "failed"
    assert info.attempts_made == 1  # unrecoverable: its other attempts are not used
    assert "campaign 'broken' of tenant 't-ssti': template error" in (info.failed_reason or "")
    await engine.assert_alive()


async def test_template_code_in_recipient_data_is_never_evaluated(
    engine: Engine, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    attack = payloads(markers)["cycler-os"]
    job = await engine.manager.schedule_email_job("transactional", {
        "campaignId": "data", "tenantId": "t-ssti",
        "recipients": [{"email": "d@example.com", "name": "{{ 7*7 }}",
                        "personalizations": {"p": attack}}],
        "content": {"subject": "Hi {{ name }}", "text": "Your code: {{ personalizations.p }}"}})
    info = await engine.finished("email", job.id)
    assert info.state == "completed"
    assert info.return_value["sent"] == 1
    [message] = [m for m in engine.sink.handler.recent if m.rcpt_tos == ["d@example.com"]]
    assert message.subject == "Hi {{ 7*7 }}"
    assert attack in message.text
    assert list(markers.iterdir()) == []


def test_resource_exhaustion_templates_are_refused() -> None:
    content = Content(subject="Hi", text="{{ 'x' * 50000000 }}")

    def compile_and_render() -> object:
        campaign = CompiledCampaign("t", "c", content, default_from="a@example.com",
                                    links=TEST_LINKS)
        return campaign.render(Recipient(email="r@example.com"))

    with pytest.raises((ContentError, RenderError)):
        compile_and_render()


@pytest.mark.parametrize("template", [
    "{{ (9 ** (9 ** 8)) is number }}",
    "{{ [1, 2] * 100000 }}",
    "{% for i in range(100000) %}x{% endfor %}",
    "{% for a in range(10) %}{% for b in range(10) %}{% for c in range(10) %}"
    "{% endfor %}{% endfor %}{% endfor %}",
])
def test_expensive_templates_are_refused(template: str) -> None:
    def compile_and_render() -> object:
        campaign = CompiledCampaign("t", "c", Content(subject="Hi", text=template),
                                    default_from="a@example.com",
                                    links=TEST_LINKS)
        return campaign.render(Recipient(email="r@example.com"))

    with pytest.raises((ContentError, RenderError)):
        compile_and_render()


def test_ordinary_loops_and_arithmetic_still_render() -> None:
    campaign = CompiledCampaign(
        "t", "c", Content(subject="{{ 2 ** 10 }} news",
                          text="{% for i in range(3) %}{{ '-' * 3 }}{{ i }}{% endfor %}"),
        default_from="a@example.com", links=TEST_LINKS)
    _, message = campaign.render(Recipient(email="r@example.com"))
    assert b"Subject: 1024 news" in message
    assert b"---0---1---2" in message
