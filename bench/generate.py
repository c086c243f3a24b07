#!/usr/bin/env python3
"""Generate realistic, deterministic CDS Hooks `patient-view` requests for benchmarking.

One synthetic patient with a long multiple-sclerosis record per size. The size is the number of
prefetched FHIR resources across all prefetch keys (Patient included). Every request is expected
to produce one *urgent* card: MS since ~11 years, low back pain since 36 days, a new paraparesis
15 days ago, plus years of routine data around them.

Mix (see `composition()`): a few Conditions (MS, back pain, the red flag, chronic context, old
encounter diagnoses), many Observations (vital signs, 0-10 pain scores, chief complaints and
neurological exam findings, one visit after another over up to 15 years), some MR ImagingStudies
(a cervical + thoracic spinal MRI first, then brain and lumbar MRIs) and MedicationRequests
(NSAIDs / analgesics by RxNorm, disease-modifying and spasticity drugs by text).

Style and building blocks come from fixtures/build_fixtures.py (imported, not copied): the same
resource shapes, the same searchset Bundles, the same structural lint (verified codes only, ids,
references, no future dates). Standard codes are only those already in the fixtures' catalogue
or in cds_service/clinical/valuesets/*.json; vital signs and exam flowsheet rows use the local
observation code system the fixtures use (their meaning is in the text), and vital-sign values
are Quantities with a unit string only (no unit code).

Deterministic: the same --seed, --anchor and size give byte-identical files. --anchor (the "today"
the data is built around) defaults to today's UTC date because the service evaluates "new" and
"recent" against its real clock; pin it to reproduce files exactly.

Usage:
    .venv/bin/python bench/generate.py                         # sizes 10 100 1000 10000 -> bench/data/
    .venv/bin/python bench/generate.py --sizes 10 100 --check  # also validate with fhir.resources (R4B)
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import random
import sys
import uuid
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DATA_DIR = BENCH / "data"
DEFAULT_SIZES = (10, 100, 1000, 10000)
DEFAULT_SEED = 20261125
GENERATOR_VERSION = 1  # bump when the output changes for the same seed/anchor

sys.path.insert(0, str(REPO / "fixtures"))
sys.path.insert(0, str(REPO))
import build_fixtures as bf  # noqa: E402  (fixtures/build_fixtures.py: stdlib only)


def _valueset_codes() -> dict[tuple[str, str], str]:
    """(system, code) -> display of every code in cds_service/clinical/valuesets/*.json."""
    out: dict[tuple[str, str], str] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("system"), str) and isinstance(node.get("code"), str):
                out[(node["system"], node["code"])] = node.get("display") or node["code"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in sorted((REPO / "cds_service" / "clinical" / "valuesets").glob("*.json")):
        walk(json.loads(path.read_text(encoding="utf-8")))
    return out


VALUESET_CODES = _valueset_codes()


def code(system: str, value: str) -> dict[str, str]:
    """A standard coding that must already exist in the fixtures' catalogue or in a value set."""
    if (system, value) in bf.CATALOGUE:
        return {"system": system, "code": value, "display": bf.CATALOGUE[(system, value)]}
    if (system, value) not in VALUESET_CODES:
        raise KeyError(f"{system}|{value} is neither in the fixtures nor in the value sets")
    return bf.std(system, value, VALUESET_CODES[(system, value)])  # registers it for bf.lint


SCT, ICD10CM, LOINC, RXNORM = bf.SNOMED, bf.ICD10CM, bf.LOINC, bf.RXNORM
LOCAL_OBS = bf.LOCAL_OBSERVATIONS

# --- codes used (all from the fixtures or the value sets) ------------------------------------
MS = code(SCT, "24700007")
MS_RR = code(SCT, "426373005")
MS_EXACERBATION = code(SCT, "192929006")
G35_A = code(ICD10CM, "G35.A")
LBP = code(SCT, "279039007")
CHRONIC_LBP = code(SCT, "278860009")
NECK_PAIN = code(SCT, "81680005")
M54_50 = code(ICD10CM, "M54.50")
PARAPARESIS = code(SCT, "1845001")
SPASTICITY = code(SCT, "221360009")
NEUROPATHIC_PAIN = code(SCT, "247398009")
PARESTHESIA = code(SCT, "91019004")
R39_15 = code(ICD10CM, "R39.15")
NUMB_LL = code(SCT, "309537005")
HYPERREFLEXIA = code(SCT, "86854008")
UNSTEADY = code(SCT, "22631008")
ATAXIA = code(SCT, "20262006")
WEAKNESS = code(SCT, "26544005")
BACK_SPASM = code(SCT, "203095000")
LUMBAR_REGION = code(SCT, "52612000")
NECK = code(SCT, "45048000")
CERVICAL_SPINE = code(SCT, "122494005")
THORACIC_SPINE = code(SCT, "122495006")
LUMBAR_SPINE = code(SCT, "122496007")
CC_REPORTED = code(LOINC, "8661-1")
CC_NARRATIVE = code(LOINC, "10154-3")
PAIN_NRS = code(LOINC, "72514-3")
MR_CSPINE = code(LOINC, "24937-5")
MR_TSPINE = code(LOINC, "24981-3")
MR_LSPINE = code(LOINC, "30679-5")
IBUPROFEN = code(RXNORM, "5640")
NAPROXEN_SODIUM = code(RXNORM, "142442")
ACETAMINOPHEN = code(RXNORM, "161")
MELOXICAM = code(RXNORM, "41493")
TRAMADOL = code(RXNORM, "10689")

# Vital signs: local flowsheet rows (no LOINC vital-sign code is in the fixtures or value sets).
VITALS: list[tuple[str, str, str, float, float, int]] = [
    # local code, display, unit, low, high, decimals
    ("FS-VS-HR", "Heart rate", "beats/minute", 58, 96, 0),
    ("FS-VS-BP-SYS", "Blood pressure, systolic", "mmHg", 104, 146, 0),
    ("FS-VS-BP-DIA", "Blood pressure, diastolic", "mmHg", 62, 92, 0),
    ("FS-VS-TEMP", "Body temperature", "degrees C", 36.2, 37.4, 1),
    ("FS-VS-SPO2", "Oxygen saturation", "%", 95, 100, 0),
    ("FS-VS-RR", "Respiratory rate", "breaths/minute", 12, 20, 0),
    ("FS-VS-WT", "Body weight", "kg", 61, 67, 1),
]

# Neurological exam rows: (local code, display, normal value text, abnormal coded finding, abnormal text)
EXAM_ROWS: list[tuple[str, str, str, dict[str, str], str]] = [
    ("FS-NEURO-TONE-LE", "Tone, lower extremities", "Normal tone", SPASTICITY, "Increased tone, spastic catch"),
    ("FS-NEURO-REFLEX", "Deep tendon reflexes", "2+ and symmetric", HYPERREFLEXIA, "3+ at knees, brisk"),
    ("FS-NEURO-GAIT", "Gait", "Normal gait, tandem intact", UNSTEADY, "Wide-based, unsteady on tandem"),
    ("FS-NEURO-STR-LE", "Strength, lower extremities", "5/5 throughout", WEAKNESS, "4+/5 hip flexors"),
    (
        "FS-NEURO-SENS-LE",
        "Sensation, lower extremities",
        "Intact to light touch and pinprick",
        NUMB_LL,
        "Reduced vibration sense at the toes",
    ),
    ("FS-NEURO-COORD", "Coordination", "Finger-nose-finger and heel-shin intact", ATAXIA, "Mild dysmetria left"),
    (
        "FS-SPINE-EXAM",
        "Spine examination",
        "Non-tender, full range of motion",
        BACK_SPASM,
        "Paraspinal muscle tenderness L4-L5",
    ),
]

ROUTINE_COMPLAINTS = [
    "Routine multiple sclerosis follow-up",
    "Fatigue",
    "Follow-up, doing well",
    "Infusion visit",
    "Headache",
    "Blurred vision, right eye",
    "Leg stiffness in the evening",
    "Medication review",
    "Annual review",
    "Heat intolerance",
    "Poor sleep",
    "Follow-up after MRI",
]
DMT_AND_OTHER_MEDS = [  # text only: these drugs have no code in the fixtures or value sets
    ("ocrelizumab 300 mg/10 mL solution for IV infusion", "Infuse 600 mg IV every 6 months"),
    ("baclofen 10 mg tablet", "Take 1 tablet by mouth three times a day"),
    ("gabapentin 300 mg capsule", "Take 1 capsule by mouth at bedtime"),
    ("vitamin D3 2000 unit tablet", "Take 1 tablet by mouth daily"),
    ("oxybutynin 5 mg tablet", "Take 1 tablet by mouth twice a day"),
]
ANALGESICS = [
    (IBUPROFEN, "ibuprofen 400 mg tablet", "Take 1 tablet (400 mg) by mouth every 8 hours as needed"),
    (NAPROXEN_SODIUM, "naproxen sodium 220 mg tablet", "1 tablet by mouth twice a day as needed"),
    (ACETAMINOPHEN, "acetaminophen 500 mg tablet", "Take 1 tablet (500 mg) by mouth every 6 hours as needed"),
    (MELOXICAM, "meloxicam 7.5 mg tablet", "Take 1 tablet by mouth daily as needed"),
    (TRAMADOL, "tramadol 50 mg tablet", "Take 1 tablet by mouth every 6 hours as needed for severe pain"),
]


# The service's discovery `prefetch` (README "Protocol behaviour"); only the self links use the queries.
PREFETCH_TEMPLATES = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}",
    "observations": "Observation?patient={{context.patientId}}&category=survey,exam,vital-signs",
    "imagingStudies": "ImagingStudy?patient={{context.patientId}}&modality=http://dicom.nema.org/resources/ontology/DCM|MR",
    "medications": "MedicationRequest?patient={{context.patientId}}",
    "medicationStatements": "MedicationStatement?patient={{context.patientId}}",
}


# --- sizes -----------------------------------------------------------------------------------


def composition(n: int) -> dict[str, int]:
    """Resources per type for a prefetch of `n` resources (Patient included)."""
    if n < 10:
        raise ValueError("the smallest realistic prefetch here is 10 resources")
    conditions = max(3, min(45, round(n**0.42)))
    imaging = max(1, round(0.4 * math.sqrt(n)))
    medications = 1 if n <= 10 else round(0.6 * n**0.55)
    observations = n - 1 - conditions - imaging - medications
    return {
        "Patient": 1,
        "Condition": conditions,
        "Observation": observations,
        "ImagingStudy": imaging,
        "MedicationRequest": medications,
    }


def span_years(n: int) -> float:
    """How far back the record goes: a larger prefetch is a longer history, up to 15 years."""
    return min(15.0, max(0.25, 1.5 * math.log10(n / 10) ** 1.6 + 0.25))


# --- dates -----------------------------------------------------------------------------------


class Clock:
    def __init__(self, anchor: dt.date):
        self.anchor = anchor

    def day(self, days_ago: float) -> dt.date:
        return self.anchor - dt.timedelta(days=max(1, int(round(days_ago))))

    def date(self, days_ago: float) -> str:
        return self.day(days_ago).isoformat()

    def at(self, days_ago: float, minutes: int) -> str:
        """A dateTime on the day `days_ago` before the anchor, `minutes` after 08:00 UTC."""
        d = dt.datetime.combine(self.day(days_ago), dt.time(8, 0), dt.UTC) + dt.timedelta(minutes=minutes)
        return d.strftime("%Y-%m-%dT%H:%M:%SZ")

    def day_tag(self, days_ago: float) -> str:
        return self.day(days_ago).strftime("%Y%m%d")


# --- the chart -------------------------------------------------------------------------------


def _conditions(c: bf.Chart, k: Clock, count: int, rng: random.Random, years: float) -> None:
    """Core three first (MS, current back pain, the new red flag), then context, then old diagnoses."""
    span = years * 365
    core_and_context = [
        lambda: c.condition(
            "ms",
            bf.cc(MS, G35_A, text="Relapsing-remitting multiple sclerosis"),
            onset=k.date(11 * 365 + 40),
            recorded=k.date(11 * 365 + 20),
        ),
        lambda: c.condition(
            "lbp",
            bf.cc(LBP, text="Low back pain"),
            category=bf.ENCOUNTER_DX,
            onset=k.date(36),
            recorded=k.at(34, 425),
            encounter=c.encounter(k.day_tag(34)),
        ),
        lambda: c.condition(
            "paraparesis",
            bf.cc(PARAPARESIS, text="Paraparesis, new"),
            category=bf.ENCOUNTER_DX,
            onset=k.date(15),
            recorded=k.at(15, 380),
            encounter=c.encounter(k.day_tag(15)),
        ),
        lambda: c.condition(
            "spasticity",
            bf.cc(SPASTICITY, text="Spasticity of both legs"),
            onset=k.date(4 * 365 + 100),
            recorded=k.date(4 * 365 + 80),
        ),
        lambda: c.condition(
            "neuropathic-pain",
            bf.cc(NEUROPATHIC_PAIN, text="Neuropathic pain, legs"),
            onset=k.date(2 * 365 + 10),
            recorded=k.date(2 * 365),
        ),
        lambda: c.condition(
            "bladder",
            bf.cc(R39_15, text="Urinary urgency"),
            onset=k.date(5 * 365 + 200),
            recorded=k.at(5 * 365 + 190, 95),
        ),
        lambda: c.condition(
            "lbp-2019",
            bf.cc(LBP, text="Low back pain"),
            clinical="resolved",
            category=bf.ENCOUNTER_DX,
            onset=k.date(7 * 365 + 30),
            recorded=k.date(7 * 365 + 28),
            abatement=k.date(7 * 365 - 60),
            encounter=c.encounter(k.day_tag(7 * 365 + 28)),
        ),
        lambda: c.condition(
            "neck-pain",
            bf.cc(NECK_PAIN, text="Neck pain"),
            clinical="resolved",
            onset=k.date(3 * 365 + 150),
            recorded=k.date(3 * 365 + 148),
            abatement=k.date(3 * 365 + 60),
        ),
        lambda: c.condition(
            "relapse-2020",
            bf.cc(MS_EXACERBATION, text="MS relapse, optic neuritis"),
            clinical="resolved",
            category=bf.ENCOUNTER_DX,
            onset=k.date(6 * 365 + 75),
            recorded=k.at(6 * 365 + 74, 200),
            abatement=k.date(6 * 365 - 10),
            encounter=c.encounter(k.day_tag(6 * 365 + 74)),
        ),
        lambda: c.condition(
            "paresthesia-2017",
            bf.cc(PARESTHESIA, text="Tingling in both hands"),
            clinical="resolved",
            onset=k.date(9 * 365 + 12),
            recorded=k.date(9 * 365 + 5),
            abatement=k.date(9 * 365 - 80),
        ),
        lambda: c.condition(
            "ms-rr",
            bf.cc(MS_RR, text="Relapsing remitting multiple sclerosis"),
            category=bf.ENCOUNTER_DX,
            onset=k.date(11 * 365 + 40),
            recorded=k.at(400, 180),
            encounter=c.encounter(k.day_tag(400)),
        ),
        lambda: c.condition(
            "chronic-lbp-2023",
            bf.cc(CHRONIC_LBP, M54_50, text="Chronic low back pain"),
            clinical="resolved",
            onset=k.date(3 * 365),
            recorded=k.date(3 * 365 - 14),
            abatement=k.date(2 * 365 + 200),
        ),
    ]
    made = 0
    for make in core_and_context[:count]:
        make()
        made += 1
    i = 0
    while made < count:  # old encounter diagnoses: MS at neurology visits, resolved back-pain episodes
        days = span * (0.1 + 0.9 * rng.random()) + 120
        tag = k.day_tag(days)
        if i % 3 == 2:
            c.condition(
                f"enc-lbp-{i:03d}",
                bf.cc(M54_50, text="Low back pain, unspecified"),
                clinical="resolved",
                category=bf.ENCOUNTER_DX,
                onset=k.date(days + 3),
                recorded=k.at(days, 60 + i % 400),
                abatement=k.date(days - 30),
                encounter=c.encounter(tag),
            )
        else:
            c.condition(
                f"enc-ms-{i:03d}",
                bf.cc(G35_A, text="Relapsing-remitting multiple sclerosis"),
                category=bf.ENCOUNTER_DX,
                onset=k.date(11 * 365 + 40),
                recorded=k.at(days, 60 + i % 400),
                encounter=c.encounter(tag),
            )
        i += 1
        made += 1


def _imaging(c: bf.Chart, k: Clock, count: int, rng: random.Random, years: float) -> None:
    """The spinal MRI first (cervical + thoracic, 400 days ago: too old to remove the suggestion)."""

    def spinal(suffix: str, days: float) -> None:
        started = k.at(days, 45)
        c.imaging_study(
            suffix,
            started=started,
            description="MRI cervical and thoracic spine without and with contrast",
            procedure_codes=[
                bf.cc(MR_CSPINE, text="MRI C-spine w/wo contrast"),
                bf.cc(MR_TSPINE, text="MRI T-spine w/wo contrast"),
            ],
            series_list=[
                c.series(f"{suffix}-s1", 1, CERVICAL_SPINE, "SAG T2 C-SPINE", 22 + int(days) % 5, started),
                c.series(f"{suffix}-s2", 2, THORACIC_SPINE, "SAG T2 T-SPINE", 26 + int(days) % 7, started),
            ],
        )

    def lumbar(suffix: str, days: float) -> None:
        started = k.at(days, 300)
        c.imaging_study(
            suffix,
            started=started,
            description="MRI lumbar spine without contrast",
            procedure_codes=[bf.cc(MR_LSPINE, text="MRI lumbar spine without contrast")],
            series_list=[c.series(f"{suffix}-s1", 1, LUMBAR_SPINE, "SAG T2 L-SPINE", 20, started)],
        )

    def brain(suffix: str, days: float) -> None:
        started = k.at(days, 150)
        series_list = []
        for number, desc, inst in ((1, "AX FLAIR BRAIN", 48), (2, "SAG 3D T1 BRAIN", 176), (3, "AX T1 POST BRAIN", 48)):
            s = c.series(f"{suffix}-s{number}", number, CERVICAL_SPINE, desc, inst, started)
            del s["bodySite"]  # no verified code for the brain in the fixtures or value sets
            series_list.append(s)
        c.imaging_study(
            suffix, started=started, description="MRI brain without and with contrast", series_list=series_list
        )

    made = 0
    spinal("mri-spine-0", 400)
    made += 1
    span = years * 365
    i = 1
    while made < count:
        days = 120 + (span - 120) * (i / max(1, count - 1)) + rng.uniform(-20, 20)
        if i % 5 == 0:
            spinal(f"mri-spine-{i}", days)
        elif i % 5 == 3:
            lumbar(f"mri-lspine-{i}", days)
        else:
            brain(f"mri-brain-{i}", days)
        made += 1
        i += 1


def _medications(c: bf.Chart, k: Clock, count: int, rng: random.Random, years: float) -> None:
    """Ibuprofen for the current back pain first (active, 30 days: past the 14-day NSAID trial)."""
    lbp_ref = f"Condition/{c.prefix}-lbp"
    c.medication_request(
        "ibuprofen-current",
        bf.cc(IBUPROFEN, text="ibuprofen 400 mg tablet"),
        authored_on=k.at(30, 500),
        reason=lbp_ref,
        dosage_text="Take 1 tablet (400 mg) by mouth every 8 hours as needed for back pain",
    )
    span = years * 365
    for i in range(1, count):
        days = 40 + (span - 40) * (i / max(1, count - 1))
        if i % 3 == 0:
            med, text, dosage = ANALGESICS[(i // 3) % len(ANALGESICS)]
            concept = bf.cc(med, text=text)
        else:
            text, dosage = DMT_AND_OTHER_MEDS[i % len(DMT_AND_OTHER_MEDS)]
            concept = {"text": text}
        status = "active" if days < 200 and i % 3 != 0 else rng.choice(["completed", "completed", "stopped"])
        res = bf.medication_request(
            f"{c.prefix}-med-{i:04d}",
            c.patient_id,
            concept,
            authored_on=k.at(days, 200 + i % 300),
            dosage_text=dosage,
            status=status,
        )
        c.medications.append(res)


class _ObservationMaker:
    def __init__(self, c: bf.Chart, k: Clock, rng: random.Random, disease_onset_days: float):
        self.c, self.k, self.rng = c, k, rng
        self.progression_days = disease_onset_days * 0.6  # abnormal exam findings become common after this
        self.n = 0

    def _id(self, kind: str) -> str:
        self.n += 1
        return f"obs-{kind}-{self.n:05d}"

    def chief_complaint(self, days: float, minutes: int, text: str) -> None:
        coding = CC_NARRATIVE if self.n % 4 == 1 else CC_REPORTED
        self.c.observation(
            self._id("cc"),
            bf.cc(coding, text="Chief complaint"),
            category="survey",
            effective=self.k.at(days, minutes),
            value_string=text,
            encounter=self.c.encounter(self.k.day_tag(days)),
        )

    def pain_score(self, days: float, minutes: int, score: int, site: dict[str, Any] | None) -> None:
        self.c.observation(
            self._id("pain"),
            bf.cc(PAIN_NRS, text="Pain score (0-10)"),
            category="survey",
            effective=self.k.at(days, minutes),
            value_integer=score,
            body_site=site,
            encounter=self.c.encounter(self.k.day_tag(days)),
        )

    def vital(self, days: float, minutes: int, row: tuple[str, str, str, float, float, int]) -> None:
        local_code, display, unit, low, high, decimals = row
        value = round(self.rng.uniform(low, high), decimals)
        res = bf.observation(
            f"{self.c.prefix}-{self._id('vs')}",
            self.c.patient_id,
            bf.cc(bf.local(local_code, display, LOCAL_OBS), text=display),
            category="vital-signs",
            effective=self.k.at(days, minutes),
            value_integer=0,
            encounter=self.c.encounter(self.k.day_tag(days)),
        )
        del res["valueInteger"]
        res["valueQuantity"] = {"value": int(value) if decimals == 0 else value, "unit": unit}
        self.c.observations.append(res)

    def exam(
        self, days: float, minutes: int, row: tuple[str, str, str, dict[str, str], str], abnormal: bool | None = None
    ) -> None:
        local_code, display, normal, finding, abnormal_text = row
        if abnormal is None:
            p = 0.25 if days < self.progression_days else 0.04
            abnormal = self.rng.random() < p
        kw: dict[str, Any] = (
            {"value_concept": bf.cc(finding, text=abnormal_text)} if abnormal else {"value_string": normal}
        )
        self.c.observation(
            self._id("exam"),
            bf.cc(bf.local(local_code, display, LOCAL_OBS), text=display),
            category="exam",
            effective=self.k.at(days, minutes),
            encounter=self.c.encounter(self.k.day_tag(days)),
            **kw,
        )


def _observations(c: bf.Chart, k: Clock, count: int, rng: random.Random, years: float) -> None:
    """Recent, decision-relevant observations first; then visit after visit back in time."""
    m = _ObservationMaker(c, k, rng, disease_onset_days=11 * 365)
    priority = [
        lambda: m.chief_complaint(5, 60, "Low back pain for 3 weeks, worse at night"),
        lambda: m.pain_score(5, 70, 6, bf.cc(LUMBAR_REGION, text="Lower back")),
        lambda: m.exam(15, 400, EXAM_ROWS[4], abnormal=True),  # numbness of lower limb, 15 days ago
        lambda: m.vital(5, 65, VITALS[0]),
    ]
    for make in priority[:count]:
        make()
    remaining = count - min(count, len(priority))
    if remaining <= 0:
        return

    # One visit = one day's observations. Visit kinds by weight; sizes in observations.
    span = years * 365
    visits: list[list[Any]] = []
    budget = remaining
    while budget > 0:
        kind = rng.choices(["clinic", "infusion", "inpatient", "vitals-only"], weights=[5, 2, 1, 2])[0]
        visits.append([kind])
        budget -= {"clinic": 16, "infusion": 15, "inpatient": 40, "vitals-only": 7}[kind]
    # Spread visits over the span, newest first; the first 3 months are denser (the current episode).
    n_visits = len(visits)
    for idx, visit in enumerate(visits):
        frac = (idx + 0.5) / n_visits
        visit.append(max(2.0, 1 + span * frac + rng.uniform(-0.3, 0.3) * span / max(1, n_visits)))

    made = 0

    def room() -> bool:
        return made < remaining

    for kind, days in visits:
        recent = days <= 90
        t = rng.randint(0, 120)
        steps: list[Any] = []
        if kind in ("clinic", "infusion", "inpatient"):
            text = "Back pain, follow-up" if recent else rng.choice(ROUTINE_COMPLAINTS)
            steps.append(lambda d=days, t=t, s=text: m.chief_complaint(d, t, s))
        vitals_rounds = {"clinic": 1, "infusion": 2, "inpatient": 4, "vitals-only": 1}[kind]
        for r in range(vitals_rounds):
            for row in VITALS:
                steps.append(lambda d=days, t=t + 5 + r * 240, row=row: m.vital(d, t, row))
            score = rng.randint(3, 7) if recent else rng.choice([0, 0, 0, 1, 2, 2, 3, 4, 5])
            site = bf.cc(LUMBAR_REGION, text="Lower back") if recent or score >= 4 else None
            steps.append(lambda d=days, t=t + 8 + r * 240, sc=score, si=site: m.pain_score(d, t, sc, si))
        if kind in ("clinic", "inpatient"):
            for j, row in enumerate(EXAM_ROWS):
                steps.append(lambda d=days, t=t + 30 + j, row=row: m.exam(d, t, row))
        for step in steps:
            if not room():
                return
            step()
            made += 1
    while room():  # rounding leftovers: vitals on the most recent visit day
        m.vital(3, 200 + made, VITALS[made % len(VITALS)])
        made += 1


def build_request(n: int, seed: int, anchor: dt.date) -> tuple[dict[str, Any], dict[str, Any]]:
    """(CDS Hooks request, bf.expect(...) for the structural lint)."""
    rng = random.Random(f"{seed}:{n}")
    k = Clock(anchor)
    counts = composition(n)
    years = span_years(n)
    c = bf.Chart(f"bn{n}", "Patient-Bench", "female", "1979-05-23")
    _conditions(c, k, counts["Condition"], rng, years)
    _observations(c, k, counts["Observation"], rng, years)
    _imaging(c, k, counts["ImagingStudy"], rng, years)
    _medications(c, k, counts["MedicationRequest"], rng, years)

    pid = c.patient_id
    queries = {key: t.replace("{{context.patientId}}", pid) for key, t in PREFETCH_TEMPLATES.items()}
    request = {
        "hook": bf.HOOK,
        "hookInstance": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "fhirServer": bf.FHIR_BASE,
        "context": {"userId": bf.USER_ID, "patientId": pid},
        "prefetch": {
            "patient": c.patient,
            "conditions": bf.searchset(f"{c.prefix}-bundle-conditions", queries["conditions"], c.conditions),
            "observations": bf.searchset(f"{c.prefix}-bundle-observations", queries["observations"], c.observations),
            "imagingStudies": bf.searchset(f"{c.prefix}-bundle-imaging", queries["imagingStudies"], c.imaging),
            "medications": bf.searchset(f"{c.prefix}-bundle-medications", queries["medications"], c.medications),
            "medicationStatements": bf.searchset(f"{c.prefix}-bundle-statements", queries["medicationStatements"], []),
        },
    }
    ref = lambda suffix, rt="Condition": f"{rt}/{c.prefix}-{suffix}"  # noqa: E731
    expected = bf.expect("urgent", ms=[ref("ms")], back_pain=[ref("lbp")], new_red_flags=[ref("paraparesis")])
    actual = {rt: 0 for rt in counts}
    for _, res in bf.iter_resources(request):
        if res["resourceType"] != "Bundle":
            actual[res["resourceType"]] += 1
    assert actual == counts, (actual, counts)
    return request, expected


def lint(name: str, request: dict[str, Any], expected: dict[str, Any], anchor: dt.date) -> list[str]:
    """The fixtures' structural lint, with "the future" measured from the anchor."""
    saved = bf.NOW_DT
    bf.NOW_DT = dt.datetime.combine(anchor, dt.time(12, 0), dt.UTC)
    try:
        return bf.lint(name, request, expected)
    finally:
        bf.NOW_DT = saved


def file_for(n: int, data_dir: Path = DATA_DIR) -> Path:
    return data_dir / f"patient-view-{n}.json"


def generate(
    sizes: list[int], seed: int, anchor: dt.date, data_dir: Path = DATA_DIR, check: bool = False, quiet: bool = False
) -> dict[str, Any]:
    """Write the requests and manifest.json; return the manifest."""
    data_dir.mkdir(parents=True, exist_ok=True)
    get_model = None
    if check:
        from fhir.resources.R4B import get_fhir_model_class as get_model
    manifest: dict[str, Any] = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "anchor": anchor.isoformat(),
        "expected_indicator": "critical",
        "files": {},
    }
    problems: list[str] = []
    for n in sizes:
        request, expected = build_request(n, seed, anchor)
        name = f"patient-view-{n}"
        problems += lint(name, request, expected, anchor)
        if get_model is not None:
            problems += bf.fhir_check(name, request, get_model)
        body = json.dumps(request, ensure_ascii=False, separators=(",", ":")).encode()
        path = file_for(n, data_dir)
        path.write_bytes(body)
        entry = {
            "path": path.name,
            "resources": n,
            "bytes": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "composition": composition(n),
            "span_years": round(span_years(n), 2),
        }
        manifest["files"][str(n)] = entry
        if not quiet:
            print(f"  {path.relative_to(REPO)}: {n} resources, {len(body) / 1e6:.2f} MB, {entry['composition']}")
    (data_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    if problems:
        for p in problems[:20]:
            print(f"  problem: {p}", file=sys.stderr)
        raise SystemExit(f"{len(problems)} problem(s) in the generated data")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate benchmark patient-view requests into bench/data/.")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=list(DEFAULT_SIZES),
        help="prefetch sizes in resources (default: 10 100 1000 10000)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--anchor",
        type=dt.date.fromisoformat,
        default=None,
        help="the 'today' the data is built around, YYYY-MM-DD (default: today, UTC)",
    )
    parser.add_argument("--out", type=Path, default=DATA_DIR)
    parser.add_argument("--check", action="store_true", help="also validate every resource with fhir.resources (R4B)")
    args = parser.parse_args(argv)
    anchor = args.anchor or dt.datetime.now(dt.UTC).date()
    generate(args.sizes, args.seed, anchor, args.out, check=args.check)
    print(f"seed {args.seed}, anchor {anchor}: lint {'and fhir.resources check ' if args.check else ''}passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
