"""CDS Hooks 2.0 feedback endpoint: its `router` is included by `create_app()`."""

from __future__ import annotations

from cds_service.feedback.models import FeedbackItem, FeedbackRequest
from cds_service.feedback.routes import router

__all__ = ["FeedbackItem", "FeedbackRequest", "router"]
