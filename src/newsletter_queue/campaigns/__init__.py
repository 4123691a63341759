"""Campaigns: content, batches, state, progress and completion.

- ``lifecycle``: batch ids and planning, the batch counters and the one
  ``campaign-complete`` per campaign (the Redis keys and job ids are part of the data
  format: a running system's campaigns keep completing across an upgrade).
- ``control``: a campaign's state (*scheduled*, *sending*, *paused*, *cancelled*) and
  the live counters the email processor records once per chunk.
- ``manage``: ``Campaigns`` — save, send, status, pause, resume, cancel, recipient
  lookups and the list — handed out as ``QueueManager.campaigns``.
- ``status``: what those return (``CampaignStatus``, ``SendResult`` …).
- ``recipients``: reading and checking recipient rows (CSV, NDJSON, iterables);
  ``spool``: a send's checked rows kept for reading back, so a source is read once.
"""

from __future__ import annotations

from .control import CAMPAIGN_STATES, CampaignControl, CampaignState
from .lifecycle import (
    PROGRESS_TTL_S,
    CampaignLifecycle,
    CampaignPlan,
    CampaignProgress,
    CompletionHook,
    batch_job,
    batch_job_id,
    campaign_complete_job_id,
    enqueue_campaign_complete,
    plan_batches,
    plan_campaign,
)
from .manage import Campaigns
from .recipients import RecipientCheck, RecipientsError, RowError
from .status import CampaignPage, CampaignStatus, CampaignSummary, SendResult

__all__ = [
    "CAMPAIGN_STATES",
    "PROGRESS_TTL_S",
    "CampaignControl",
    "CampaignLifecycle",
    "CampaignPage",
    "CampaignPlan",
    "CampaignProgress",
    "CampaignState",
    "CampaignStatus",
    "CampaignSummary",
    "Campaigns",
    "CompletionHook",
    "RecipientCheck",
    "RecipientsError",
    "RowError",
    "SendResult",
    "batch_job",
    "batch_job_id",
    "campaign_complete_job_id",
    "enqueue_campaign_complete",
    "plan_batches",
    "plan_campaign",
]
