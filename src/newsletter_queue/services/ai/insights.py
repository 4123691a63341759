"""Campaign insights: rule-based recommendations from a campaign's figures.

The rules run on every ``campaign-insights`` job, online or offline, so the
recommendations are reproducible and testable; an online provider only adds a prose
summary on top. Thresholds are the usual industry rules of thumb:

===================  =========================  ==========================
metric               high (act now)             medium (watch)
===================  =========================  ==========================
bounce rate          > 5 %                      > 2 %
open rate            < 15 %                     < 20 %   (≥ 40 %: a strength)
click rate           < 1 %                      < 2 %    (≥ 5 %: a strength)
click-to-open rate   —                          < 10 %
unsubscribe rate     > 0.5 %                    > 0.2 %
complaint rate       > 0.1 %                    —
send hour            —                          ≥ 2 h from the best hour
open-rate trend      —                          ≥ 20 % below the earlier mean
===================  =========================  ==========================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .models import CampaignStats

Severity = Literal["high", "medium", "low", "info"]
_SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2, "info": 3}

BOUNCE_HIGH, BOUNCE_WARN = 0.05, 0.02
OPEN_LOW, OPEN_WARN, OPEN_GOOD = 0.15, 0.20, 0.40
CLICK_LOW, CLICK_WARN, CLICK_GOOD = 0.01, 0.02, 0.05
CTOR_WARN = 0.10
UNSUB_HIGH, UNSUB_WARN = 0.005, 0.002
COMPLAINT_HIGH = 0.001
SEND_HOUR_GAP = 2
TREND_DROP = 0.20


@dataclass(frozen=True)
class Recommendation:
    """One finding: what to do about which metric, and how urgent it is."""

    code: str
    severity: Severity
    message: str
    metric: str | None = None
    value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "message": self.message,
                "metric": self.metric, "value": self.value}


@dataclass(frozen=True)
class CampaignAnalysis:
    metrics: dict[str, float | int | None]
    recommendations: list[Recommendation]

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": dict(self.metrics),
                "recommendations": [r.to_dict() for r in self.recommendations]}


def _ratio(part: int | None, whole: int) -> float | None:
    if part is None or whole <= 0:
        return None
    return part / whole


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def compute_metrics(stats: CampaignStats) -> dict[str, float | int | None]:
    """Rates derived from the raw figures (``None`` where they cannot be computed)."""
    delivered = stats.delivered if stats.delivered is not None else stats.sent - stats.bounced
    open_rate = stats.open_rate if stats.open_rate is not None else _ratio(stats.opens, delivered)
    click_rate = (stats.click_rate if stats.click_rate is not None
                  else _ratio(stats.clicks, delivered))
    ctor: float | None = None
    if stats.clicks is not None and stats.opens:
        ctor = stats.clicks / stats.opens
    elif open_rate and click_rate is not None:
        ctor = click_rate / open_rate
    return {
        "sent": stats.sent,
        "delivered": delivered,
        "bounceRate": _ratio(stats.bounced, stats.sent),
        "openRate": open_rate,
        "clickRate": click_rate,
        "clickToOpenRate": ctor,
        "unsubscribeRate": _ratio(stats.unsubscribes, delivered),
        "complaintRate": _ratio(stats.complaints, delivered),
    }


def analyse(stats: CampaignStats) -> CampaignAnalysis:
    """Metrics and recommendations for one campaign, most urgent first."""
    metrics = compute_metrics(stats)
    if stats.sent == 0:
        return CampaignAnalysis(metrics, [Recommendation(
            "no-sends", "info", "Nothing was sent, so there is nothing to analyse yet.")])
    recs: list[Recommendation] = []
    _bounces(metrics, recs)
    _opens(metrics, recs)
    _clicks(metrics, recs)
    _unsubscribes(metrics, recs)
    _send_time(stats, recs)
    _trend(stats, metrics, recs)
    recs.sort(key=lambda r: _SEVERITY_ORDER[r.severity])  # stable: rule order within
    return CampaignAnalysis(metrics, recs)


def _bounces(m: dict[str, float | int | None], recs: list[Recommendation]) -> None:
    rate = m["bounceRate"]
    if rate is None or rate <= BOUNCE_WARN:
        return
    high = rate > BOUNCE_HIGH
    recs.append(Recommendation(
        "list-hygiene", "high" if high else "medium",
        f"Bounce rate {_pct(rate)} is above {_pct(BOUNCE_HIGH if high else BOUNCE_WARN)}: "
        "remove hard-bounced addresses, confirm new sign-ups (double opt-in) and "
        "re-permission subscribers who have not engaged in months.",
        "bounceRate", rate))


def _opens(m: dict[str, float | int | None], recs: list[Recommendation]) -> None:
    rate = m["openRate"]
    if rate is None:
        return
    if rate < OPEN_WARN:
        high = rate < OPEN_LOW
        recs.append(Recommendation(
            "subject-lines", "high" if high else "medium",
            f"Open rate {_pct(rate)} is below {_pct(OPEN_LOW if high else OPEN_WARN)}: "
            "test shorter subject lines (30–50 characters) with a clear benefit, "
            "personalise them, avoid spam trigger words and check the sender name.",
            "openRate", rate))
    elif rate >= OPEN_GOOD:
        recs.append(Recommendation(
            "strong-opens", "info",
            f"Open rate {_pct(rate)} is strong: reuse this subject-line style.",
            "openRate", rate))


def _clicks(m: dict[str, float | int | None], recs: list[Recommendation]) -> None:
    rate = m["clickRate"]
    if rate is not None and rate < CLICK_WARN:
        high = rate < CLICK_LOW
        recs.append(Recommendation(
            "calls-to-action", "high" if high else "medium",
            f"Click rate {_pct(rate)} is below {_pct(CLICK_LOW if high else CLICK_WARN)}: "
            "use one prominent call to action near the top and make links descriptive.",
            "clickRate", rate))
    elif rate is not None and rate >= CLICK_GOOD:
        recs.append(Recommendation(
            "strong-clicks", "info",
            f"Click rate {_pct(rate)} is strong: keep this content format.",
            "clickRate", rate))
    ctor = m["clickToOpenRate"]
    if ctor is not None and ctor < CTOR_WARN and (rate is None or rate >= CLICK_WARN):
        recs.append(Recommendation(
            "content-relevance", "medium",
            f"Only {_pct(ctor)} of openers clicked: the content may not match what the "
            "subject promised; segment by interest.",
            "clickToOpenRate", ctor))


def _unsubscribes(m: dict[str, float | int | None], recs: list[Recommendation]) -> None:
    rate = m["unsubscribeRate"]
    if rate is not None and rate > UNSUB_WARN:
        high = rate > UNSUB_HIGH
        recs.append(Recommendation(
            "frequency", "high" if high else "medium",
            f"Unsubscribe rate {_pct(rate)} is above "
            f"{_pct(UNSUB_HIGH if high else UNSUB_WARN)}: review sending frequency and "
            "offer a preference centre (fewer emails, topics) instead of only unsubscribe.",
            "unsubscribeRate", rate))
    complaints = m["complaintRate"]
    if complaints is not None and complaints > COMPLAINT_HIGH:
        recs.append(Recommendation(
            "deliverability", "high",
            f"Spam complaint rate {_pct(complaints)} is above {_pct(COMPLAINT_HIGH)}: "
            "mailbox providers may start filtering; send only to engaged subscribers "
            "and make unsubscribing one click.",
            "complaintRate", complaints))


def _send_time(stats: CampaignStats, recs: list[Recommendation]) -> None:
    best = stats.best_send_hour
    if best is None:
        return
    if stats.send_hour is None:
        recs.append(Recommendation(
            "send-time", "low", f"Schedule the next campaign for {best:02d}:00, "
            "when this audience opens most.", "bestSendHour", best))
        return
    gap = min(abs(stats.send_hour - best), 24 - abs(stats.send_hour - best))
    if gap >= SEND_HOUR_GAP:
        recs.append(Recommendation(
            "send-time", "medium", f"Sent at {stats.send_hour:02d}:00 but this audience "
            f"opens most at {best:02d}:00: schedule the next campaign then.",
            "bestSendHour", best))


def _trend(stats: CampaignStats, m: dict[str, float | int | None],
           recs: list[Recommendation]) -> None:
    current = m["openRate"]
    if not stats.trend or current is None:
        return
    earlier = sum(stats.trend) / len(stats.trend)
    if earlier > 0 and current <= earlier * (1 - TREND_DROP):
        drop = 1 - current / earlier
        recs.append(Recommendation(
            "engagement-decline", "medium",
            f"Open rate fell {_pct(drop)} below the earlier average of {_pct(earlier)}: "
            "check recent changes in content, frequency or deliverability, and run a "
            "re-engagement series for inactive subscribers.",
            "openRate", current))


def summarize(metrics: dict[str, Any], recommendations: list[dict[str, Any]]) -> str:
    """A short deterministic summary (what the offline provider answers)."""
    parts = [f"Sent {metrics.get('sent', 0)}"]
    for key, label in (("openRate", "open rate"), ("clickRate", "click rate"),
                       ("bounceRate", "bounce rate")):
        value = metrics.get(key)
        if isinstance(value, int | float):
            parts.append(f"{label} {_pct(float(value))}")
    text = ", ".join(parts) + "."
    urgent = [r for r in recommendations if r.get("severity") in ("high", "medium")]
    if urgent:
        text += f" Top priority: {urgent[0].get('message', '')}"
        if len(urgent) > 1:
            text += f" ({len(urgent) - 1} more to review.)"
    else:
        text += " No problems found; keep the current approach."
    return text
