"""FHIR resources -> ClinicalFacts: runs each rule module over one patient's resources."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from cds_service.clinical.analgesic_response import poor_response_findings
from cds_service.clinical.back_pain import back_pain_findings, visit_reason_findings
from cds_service.clinical.cord_features import cord_feature_findings
from cds_service.clinical.facts import ClinicalFacts, Finding, RuleSettings
from cds_service.clinical.mechanical_pattern import mechanical_findings
from cds_service.clinical.multiple_sclerosis import ms_findings
from cds_service.clinical.orders import order_reason_findings
from cds_service.clinical.red_flags import red_flag_findings
from cds_service.clinical.spinal_imaging import spinal_mri_studies


def _unique(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """One finding per (concept, resource): a resource matched twice is still one piece of evidence."""
    seen: dict[tuple[str, str], Finding] = {}
    for finding in findings:
        seen.setdefault((finding.concept, finding.evidence.reference), finding)
    return tuple(seen.values())


def extract_facts(
    resources: Iterable[Any],
    now: dt.date,
    settings: RuleSettings = RuleSettings(),
    medications_assessed: bool = True,
    orders: Iterable[Any] = (),
    encounter_id: str | None = None,
) -> ClinicalFacts:
    """Every fact of RULES.md 1 for one patient; `now` is the date the rules are evaluated at.

    `orders` are the draft orders whose reasons count as evidence (order-select / order-sign); a
    draft that is also in the patient's data is one resource, not two. `encounter_id` is the
    visit being charted (`context.encounterId`): its reason for the visit counts as evidence.
    """
    orders = list(orders)
    unique: dict[tuple[str, Any], Any] = {}
    for resource in list(resources) + orders:  # a draft order replaces its stored copy
        key = (resource.get_resource_type(), resource.id if resource.id else id(resource))
        unique[key] = resource
    by_type: dict[str, list[Any]] = {}
    for resource in unique.values():
        by_type.setdefault(resource.get_resource_type(), []).append(resource)
    conditions = by_type.get("Condition", [])
    observations = by_type.get("Observation", [])
    medications = {f"Medication/{m.id}": m for m in by_type.get("Medication", []) if m.id}
    medication_uses = by_type.get("MedicationRequest", []) + by_type.get("MedicationStatement", [])

    ms, demyelinating = ms_findings(conditions)
    back_pain = back_pain_findings(conditions, observations, now, settings.lookback_days)
    back_pain += visit_reason_findings(by_type.get("Encounter", []), conditions, encounter_id, now)
    order_ms, order_back_pain = order_reason_findings(orders, now)
    ms += order_ms
    all_back_pain = _unique([f for f, _ in back_pain] + order_back_pain)
    back_pain_resources = list({id(r): r for _, r in back_pain}.values())
    new_flags, chronic_flags = red_flag_findings(conditions, observations, now, settings.lookback_days)
    return ClinicalFacts(
        now=now,
        multiple_sclerosis=_unique(ms),
        demyelinating_context=_unique(demyelinating),
        back_pain=all_back_pain,
        new_red_flags=_unique(new_flags),
        chronic_red_flags=_unique(chronic_flags),
        cord_features=_unique(cord_feature_findings(conditions, observations, ms)),
        poor_analgesic_response=_unique(
            poor_response_findings(
                medication_uses,
                medications,
                all_back_pain,
                back_pain_resources,
                now,
                settings.nsaid_trial_days,
                settings.nsaid_before_onset_days,
            )
        ),
        mechanical_pattern=_unique(mechanical_findings(back_pain_resources)),
        spinal_mri=tuple(
            spinal_mri_studies(
                by_type.get("ImagingStudy", []), by_type.get("DiagnosticReport", []), by_type.get("Procedure", [])
            )
        ),
        medications_assessed=medications_assessed,
        settings=settings,
    )
