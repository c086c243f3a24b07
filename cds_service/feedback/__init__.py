"""CDS Hooks 2.0 feedback endpoint: `install_feedback_routes(app)` after `install_storage(app, ...)`."""

from __future__ import annotations

from cds_service.feedback.models import FeedbackItem, FeedbackRequest
from cds_service.feedback.routes import install_feedback_routes, router

__all__ = ["FeedbackItem", "FeedbackRequest", "install_feedback_routes", "router"]
