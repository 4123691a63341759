"""The deterministic parts of the AI jobs, with exact expectations: subject scoring and
rewriting, campaign-insight rules, template drafts, reading model replies, Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from newsletter_queue.processors.ai import read_alternatives, read_draft, read_summary
from newsletter_queue.services.ai.drafts import template_draft
from newsletter_queue.services.ai.heuristics import (
    clean_subject,
    find_spam_triggers,
    offline_alternatives,
    rank_subjects,
    rendered_length,
    rewrite_subject,
    score_subject,
)
from newsletter_queue.services.ai.insights import analyse
from newsletter_queue.services.ai.models import CampaignStats, ContentRequest
from newsletter_queue.services.ai.openai import parse_retry_after
from newsletter_queue.services.ai.prompts import (
    CONTENT,
    build_messages,
    decode_task,
    extract_json_object,
)

# --- subject scoring ------------------------------------------------------------------


@pytest.mark.parametrize(("subject", "score", "adjustments"), [
    ("Your weekly digest: 5 tips for better sleep", 93, {"numbers": 3}),
    ("What we learned shipping our new editor", 90, {}),
    ("{{ name }}, your March report is here 📈", 97,
     {"emoji": 2, "personalization": 5}),
    ("Hi", 70, {"length": -20}),
    ("Quick update on the roadmap", 80, {"length": -10}),
    ("FREE!!! Act now and WIN $$$", 5,
     {"length": -10, "spam": -45, "caps": -20, "punctuation": -10}),
    ("Get your FREE guide to risk-free investing!!", 40,
     {"spam": -30, "caps": -10, "punctuation": -10}),
    ("URGENT: LIMITED TIME offer ends tonight 🔥🔥🔥🔥", 20,
     {"spam": -30, "caps": -30, "emoji": -10}),
    ("*|FNAME|*, did you see this??", 75,
     {"length": -10, "punctuation": -10, "personalization": 5}),
    ("Our FAQ and API docs got a much needed refresh", 90, {}),
    ("a" * 81, 60, {"length": -30}),
    ("   ", 0, {"empty": -90}),
])
def test_score_subject(subject: str, score: int, adjustments: dict[str, int]) -> None:
    result = score_subject(subject)
    assert result.score == score
    assert dict(result.adjustments) == adjustments


def test_score_reasons_explain_every_adjustment() -> None:
    result = score_subject("FREE!!! Act now and WIN $$$")
    assert result.reasons == (
        "length 27 is short; aim for 30–50 characters",
        "spam trigger 'free'",
        "spam trigger '!!!'",
        "spam trigger 'act now'",
        "spam trigger '$$$'",
        "all-caps word 'FREE'",
        "all-caps word 'WIN'",
        "3 exclamation marks; use at most one",
    )
    assert result.to_dict()["spamTriggers"] == ["free", "!!!", "act now", "$$$"]
    assert score_subject("Your weekly digest: 5 tips for better sleep").reasons == (
        "length 43 is within the ideal 30–50 characters", "contains a number")


@pytest.mark.parametrize(("length", "delta"), [
    (19, -20), (20, -10), (29, -10), (30, 0), (50, 0), (51, -10), (60, -10), (61, -20),
    (80, -20), (81, -30),
])
def test_length_tiers(length: int, delta: int) -> None:
    assert score_subject("a" * length).adjustments.get("length", 0) == delta


def test_merge_tags_count_as_a_typical_name() -> None:
    assert rendered_length("{{ name }}") == 8
    assert rendered_length("{{first_name}}, hi") == 12
    assert rendered_length("*|FNAME|*!") == 9


def test_spam_phrases_match_whole_words_and_longest_first() -> None:
    assert find_spam_triggers("Freedom and freelancers") == []
    assert find_spam_triggers("A risk-free trial, free forever") == ["risk-free", "free"]
    assert find_spam_triggers("Guaranteed 100% CASH") == ["guaranteed", "100%", "cash"]
    assert find_spam_triggers("{{ free }} tag is not text") == []


def test_rank_is_best_first_then_input_order() -> None:
    ranked = rank_subjects(["Hi", "Hello", "What we learned shipping our new editor"])
    assert [(r.subject, r.score) for r in ranked] == [
        ("What we learned shipping our new editor", 90), ("Hi", 70), ("Hello", 70)]


# --- rewriting ------------------------------------------------------------------------
@pytest.mark.parametrize(("subject", "cleaned"), [
    ("FREE!!! Act now and WIN $$$", "And win"),
    ("Get your FREE guide to risk-free investing!!", "Get your guide to investing!"),
    ("URGENT: LIMITED TIME offer ends tonight 🔥🔥🔥🔥", "Offer ends tonight 🔥"),
    ("Did you see this?? Really??", "Did you see this? Really?"),
    ("*|FNAME|*, our SEO GUIDE is out", "*|FNAME|*, our SEO guide is out"),
    ("Your weekly digest: 5 tips for better sleep and a calmer, more focused morning",
     "Your weekly digest: 5 tips for better sleep and a"),
    ("FREE $$$", ""),
])
def test_clean_subject(subject: str, cleaned: str) -> None:
    assert clean_subject(subject) == cleaned


def test_rewrites() -> None:
    assert rewrite_subject("Get your FREE guide to risk-free investing!!") == [
        "Get your guide to investing!",
        "{{ name }}, get your guide to investing!",
        "This week: get your guide to investing!",
    ]
    # Already personalised: no second tag, no reframing around the tag.
    assert rewrite_subject("{{ name }}, your March report") == ["{{ name }}, your March report"]
    assert rewrite_subject("$$$") == []


def test_offline_alternatives_never_repeat_a_candidate() -> None:
    candidates = ["Spring planting guide", "{{ name }}, spring planting guide"]
    # The cleaned and personalised rewrites equal the candidates, so only one is left.
    assert offline_alternatives(candidates) == ["This week: spring planting guide"]
    assert offline_alternatives(["A", "B", "C", "D"]) == [
        "{{ name }}, A", "This week: A", "{{ name }}, B"]


# --- campaign insights ----------------------------------------------------------------
def _codes(**stats: object) -> list[tuple[str, str]]:
    result = analyse(CampaignStats.model_validate(stats))
    return [(r.code, r.severity) for r in result.recommendations]


def test_insights_healthy_campaign() -> None:
    assert _codes(sent=1000, opens=450, clicks=60) == [
        ("strong-opens", "info"), ("strong-clicks", "info")]


@pytest.mark.parametrize(("stats", "expected"), [
    ({"sent": 1000, "bounced": 51, "open_rate": 0.3, "click_rate": 0.03},
     [("list-hygiene", "high")]),
    ({"sent": 1000, "bounced": 50, "open_rate": 0.3, "click_rate": 0.03},
     [("list-hygiene", "medium")]),
    ({"sent": 1000, "bounced": 20, "open_rate": 0.3, "click_rate": 0.03}, []),
    ({"sent": 100, "open_rate": 0.149, "click_rate": 0.03}, [("subject-lines", "high")]),
    ({"sent": 100, "open_rate": 0.15, "click_rate": 0.03}, [("subject-lines", "medium")]),
    ({"sent": 100, "open_rate": 0.2, "click_rate": 0.03}, []),
    ({"sent": 100, "open_rate": 0.3, "click_rate": 0.009}, [("calls-to-action", "high")]),
    ({"sent": 100, "open_rate": 0.3, "click_rate": 0.019}, [("calls-to-action", "medium")]),
    ({"sent": 1000, "opens": 300, "clicks": 25}, [("content-relevance", "medium")]),
    ({"sent": 1000, "open_rate": 0.3, "click_rate": 0.03, "unsubscribes": 6},
     [("frequency", "high")]),
    ({"sent": 1000, "open_rate": 0.3, "click_rate": 0.03, "unsubscribes": 3},
     [("frequency", "medium")]),
    ({"sent": 1000, "open_rate": 0.3, "click_rate": 0.03, "complaints": 2},
     [("deliverability", "high")]),
    ({"sent": 100, "open_rate": 0.3, "click_rate": 0.03, "send_hour": 23,
      "best_send_hour": 1}, [("send-time", "medium")]),
    ({"sent": 100, "open_rate": 0.3, "click_rate": 0.03, "send_hour": 8,
      "best_send_hour": 9}, []),
    ({"sent": 100, "open_rate": 0.3, "click_rate": 0.03, "best_send_hour": 9},
     [("send-time", "low")]),
    ({"sent": 100, "open_rate": 0.24, "click_rate": 0.03, "trend": [0.3, 0.3]},
     [("engagement-decline", "medium")]),
    ({"sent": 100, "open_rate": 0.25, "click_rate": 0.03, "trend": [0.3, 0.3]}, []),
    ({"sent": 0}, [("no-sends", "info")]),
])
def test_insight_thresholds(stats: dict[str, object], expected: list[tuple[str, str]]) -> None:
    assert _codes(**stats) == expected


def test_insights_order_and_messages() -> None:
    result = analyse(CampaignStats.model_validate(
        {"sent": 1000, "bounced": 80, "opens": 100, "clicks": 5, "sendHour": 6,
         "bestSendHour": 9}))
    assert [r.severity for r in result.recommendations] == ["high", "high", "high", "medium"]
    assert result.recommendations[0].message.startswith(
        "Bounce rate 8.0% is above 5.0%: remove hard-bounced addresses")
    assert result.recommendations[3].message == (
        "Sent at 06:00 but this audience opens most at 09:00: schedule the next "
        "campaign then.")
    assert result.metrics["openRate"] == pytest.approx(100 / 920)


def test_stats_must_be_consistent() -> None:
    with pytest.raises(ValueError, match="bounced"):
        CampaignStats.model_validate({"sent": 10, "bounced": 11})


# --- drafts ---------------------------------------------------------------------------
def test_template_draft_is_escaped_and_complete() -> None:
    draft = template_draft(ContentRequest(topic="<b>AI</b> & you", tone="formal"))
    assert draft == {
        "subject": "<b>AI</b> & you: what you need to know",
        "preheader": "A short read on <b>AI</b> & you",
        "html": "<h1>&lt;b&gt;AI&lt;/b&gt; &amp; you</h1>\n<p>Dear {{ name }},</p>\n"
                "<p>Here is what&#x27;s new on &lt;b&gt;AI&lt;/b&gt; &amp; you.</p>\n"
                "<p>[Add the main story about &lt;b&gt;AI&lt;/b&gt; &amp; you.]</p>\n"
                "<p>Kind regards,<br>The team</p>",
        "text": "Dear {{ name }},\n\nHere is what's new on <b>AI</b> & you.\n\n"
                "[Add the main story about <b>AI</b> & you.]\n\nKind regards,\nThe team",
    }


# --- reading replies ------------------------------------------------------------------
TEMPLATE = template_draft(ContentRequest(topic="tides"))


@pytest.mark.parametrize("reply", [
    '{"subject": "S", "html": "<p>B</p>", "text": "B"}',
    'Here you go:\n```json\n{"subject": "S", "html": "<p>B</p>", "text": "B"}\n```',
    'Sure. {"subject": "S", "html": "<p>B</p>", "text": "B"} Hope that helps {!}',
])
def test_read_draft_finds_json_anywhere(reply: str) -> None:
    draft, fmt, _ = read_draft(reply, TEMPLATE)
    assert fmt == "json"
    assert (draft["subject"], draft["html"], draft["text"], draft["preheader"]) == (
        "S", "<p>B</p>", "B", "")


def test_read_draft_fallbacks() -> None:
    draft, fmt, _ = read_draft('{"subject": "only a subject"}', TEMPLATE)
    assert fmt == "text"  # JSON without a body is not a draft
    assert draft["subject"] == TEMPLATE["subject"]
    draft, fmt, _ = read_draft('{"subject": "S", "text": "Line one\\n\\nTwo & three"}',
                               TEMPLATE)
    assert (fmt, draft["html"]) == ("json", "<p>Line one</p>\n<p>Two &amp; three</p>")
    assert read_draft("   ", TEMPLATE) == (TEMPLATE, "template", None)


def test_read_alternatives() -> None:
    assert read_alternatives('["One idea", "Two ideas", "Old"]', ["old"]) == [
        "One idea", "Two ideas"]
    assert read_alternatives('{"subjects": ["A", 3, "B", "A"]}', []) == ["A", "B"]
    assert read_alternatives("Ideas:\n* First\n2) Second\n\n'Third'\nFourth", []) == [
        "First", "Second", "Third"]


def test_read_summary() -> None:
    assert read_summary('{"summary": " Good. "}') == "Good."
    assert read_summary("x" * 3000).endswith("…")
    assert len(read_summary("x" * 3000)) == 2000


def test_extract_json_object() -> None:
    assert extract_json_object("no json") is None
    assert extract_json_object("[1, 2]") is None
    assert extract_json_object('{"a": {"b": 1}} trailing') == {"a": {"b": 1}}
    assert extract_json_object('{bad} then {"ok": true}') == {"ok": True}


def test_task_messages_round_trip() -> None:
    messages = build_messages(CONTENT, {"topic": "é"})
    assert decode_task(messages) == (CONTENT, {"topic": "é"})
    assert decode_task(messages[1:]) is None


# --- Retry-After ----------------------------------------------------------------------
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("headers", "expected"), [
    ({"retry-after": "2"}, 2000),
    ({"retry-after": "1.5"}, 1500),
    ({"retry-after": "-3"}, 0),
    ({"retry-after": "Thu, 01 Jan 2026 12:00:30 GMT"}, 30_000),
    ({"retry-after": "Thu, 01 Jan 2026 11:59:00 GMT"}, 0),
    ({"retry-after": "nan"}, 777),
    ({"retry-after": "later"}, 777),
    ({"retry-after-ms": "250", "retry-after": "9"}, 250),
    ({"retry-after-ms": "x", "retry-after": "9"}, 9000),
    ({}, 777),
])
def test_parse_retry_after(headers: dict[str, str], expected: int) -> None:
    assert parse_retry_after(headers, 777, now=NOW) == expected
