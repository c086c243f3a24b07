"""The Prometheus metrics of the service, defined once. No patient data in any label: services,
statuses, outcomes, indicators and fixed reason codes only. Served by `/metrics` (observability.py).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

CALLS = Counter("cds_calls_total", "CDS service calls", ["service", "status"])
CALL_SECONDS = Histogram(
    "cds_call_duration_seconds", "CDS service call latency", ["service", "status"], buckets=_LATENCY_BUCKETS
)
CARDS = Counter("cds_cards_total", "Cards returned", ["service", "indicator"])
FHIR_READS = Counter("cds_fhir_reads_total", "Reads from EHR FHIR servers", ["outcome"])
FHIR_READ_SECONDS = Histogram(
    "cds_fhir_read_duration_seconds", "FHIR read latency", ["outcome"], buckets=_LATENCY_BUCKETS
)
FEEDBACK = Counter("cds_feedback_total", "Feedback entries received", ["service", "outcome"])
# Calls refused by client authentication: status 401 with the fixed reason code of the refusal
# (security/jwt_auth.py), or 503 when the shared replay store cannot be reached.
AUTH_REFUSALS = Counter("cds_auth_refusals_total", "Calls refused by client authentication", ["status", "reason"])
# The database could not be used and the call went on without it: which use, and why
# (timeout, error, recently_failed: skipped after a recent failure, queue_full).
STORAGE_FALLBACKS = Counter(
    "cds_storage_fallbacks_total", "Database uses given up on (the call went on without them)", ["use", "reason"]
)
# Requests answered 503 at once because too many were in flight (protocol/load_shedding.py).
SHED = Counter("cds_shed_total", "Hook calls refused with 503 because too many were in flight", ["kind"])
# Requests whose client did not send the whole body in time, or went away before the answer.
CLIENT_ABORTS = Counter("cds_client_aborts_total", "Requests abandoned by their client", ["reason"])
