"""The clinician-reviewed wording (cards/*.toml), loaded and checked against its schema once, at start-up.

Every key is required and no unknown key is allowed, every `{placeholder}` must be one the text may
use, summaries stay under 140 characters (CDS Hooks), and a reference gets a direct link only when
REFERENCES.md marks it VERIFIED. A mistake in the wording therefore stops the app from starting; it
never turns up later as the first card of some level failing to render.
"""

from __future__ import annotations

import string
import tomllib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, ClassVar, Literal, Self, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from cds_service.clinical import valuesets
from cds_service.clinical.decision import DISTINGUISHING_FEATURES, Level

CONTENT_FILE = "ms-back-pain.toml"
GUIDANCE_FILE = "ms-back-pain-guidance.toml"


class CardContentError(ValueError):
    """The wording in cards/ does not match its schema (raised at start-up)."""


Text = Annotated[str, Field(min_length=1)]
Summary = Annotated[str, Field(min_length=1, max_length=139)]  # CDS Hooks: under 140 characters
Indicator = Literal["info", "warning", "critical"]


def _placeholders_in(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


class _Model(BaseModel):
    """Strict: every key required unless it says otherwise, none unknown; each text may use only the
    placeholders its model lists for it in `placeholders` (none by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    placeholders: ClassVar[dict[str, tuple[str, ...]]] = {}

    @model_validator(mode="after")
    def _known_placeholders(self) -> Self:
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, str):
                allowed = set(self.placeholders.get(name, ()))
                unknown = _placeholders_in(value) - allowed
                if unknown:
                    raise ValueError(
                        f"{name}: unknown placeholder(s) {sorted(unknown)}; it may use {sorted(allowed) or 'none'}"
                    )
        return self


class Topic(_Model):
    system: str
    code: str
    display: str


class SourceText(_Model):
    label: Text
    topic: Topic


class GuidanceLinkText(_Model):
    link_label: Text


class LevelText(_Model):
    indicator: Indicator
    summary: Summary
    lead: Text
    now: Text
    management: bool  # may mechanism-based management follow (never on the critical card)


class LevelsText(_Model):
    urgent: LevelText
    cord_features: LevelText = Field(alias="cord-features")
    baseline: LevelText

    def of(self, level: Level) -> LevelText:
        return {Level.URGENT: self.urgent, Level.CORD_FEATURES: self.cord_features, Level.BASELINE: self.baseline}[
            level
        ]


class FactLabels(_Model):
    multiple_sclerosis: Text
    back_pain: Text
    new_red_flags: Text
    chronic_red_flags: Text
    cord_features: Text
    poor_analgesic_response: Text
    mechanical_pattern: Text
    demyelinating_context: Text


def _features_complete(features: dict[str, str]) -> dict[str, str]:
    if set(features) != set(DISTINGUISHING_FEATURES):
        raise ValueError(f"features must be exactly {sorted(DISTINGUISHING_FEATURES)}")
    return features


class DetailText(_Model):
    placeholders = {"worth_asking": ("items",), "quieted": ("date", "reason"), "more": ("count",)}
    why_heading: Text
    worth_asking: Text
    dual_causes: Text
    medications_not_assessed: Text
    quieted: Text
    disclaimer: Text
    no_date: Text
    bilateral: Text
    more: Text
    fact_labels: FactLabels
    features: Annotated[dict[str, Text], AfterValidator(_features_complete)]


def mechanism_keys() -> frozenset[str]:
    """What a management line may be tied to: a cord feature or the mechanical pattern (their concept keys)."""
    keys = set(valuesets.concepts("cord_features")) | set(valuesets.concepts("mechanical_pattern"))
    return frozenset(keys | {"ms_spinal_cord"})


def _known_mechanisms(when: list[str]) -> list[str]:
    unknown = set(when) - mechanism_keys()
    if unknown:
        raise ValueError(f"unknown feature(s) {sorted(unknown)}; known: {sorted(mechanism_keys())}")
    return when


class ManagementText(_Model):
    when: Annotated[list[str], Field(min_length=1), AfterValidator(_known_mechanisms)]
    text: Text


class MriRegions(_Model):
    cervical: Text
    thoracic: Text
    lumbar: Text


class MriText(_Model):
    placeholders = {
        "study": ("regions",),
        "recent_study": ("study", "when"),
        "newer_red_flag": ("date", "flags"),
        "partial_study": ("study", "when"),
    }
    label: Text
    description_cervical: Text
    description_thoracic: Text
    study: Text
    and_: str = Field(alias="and", min_length=1)
    recent_study: Text
    newer_red_flag: Text
    partial_study: Text
    regions: MriRegions


class OverrideReasonText(_Model):
    code: str = Field(min_length=1)
    display: Text


class OverrideReasonSystem(_Model):
    uri: str = Field(min_length=1)


class Reference(_Model):
    title: Text
    numbers: list[int] = Field(min_length=1)  # the article's reference number(s)
    status: Literal["VERIFIED", "AMBIGUOUS", "NOT FOUND"]  # as REFERENCES.md records it
    link: Literal["direct", "title-search", "none"]
    label: Text | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _direct_only_when_verified(self) -> Reference:
        if self.link == "direct":
            if self.status != "VERIFIED":
                raise ValueError(f"{self.title!r}: a direct link needs a VERIFIED entry in REFERENCES.md")
            if not (self.url and self.url.startswith("https://") and self.label):
                raise ValueError(f"{self.title!r}: a direct link needs an https url and a label")
        elif self.url is not None:
            raise ValueError(f"{self.title!r}: only a direct link carries a url")
        return self


class ReferencesText(_Model):
    placeholders = {"search_label": ("title",)}
    search_label: Text
    items: list[Reference] = Field(min_length=1)


class LumbarImagingText(_Model):
    placeholders = {"lead": ("what",), "replace_label": ("modality",), "delete_description": ("modality", "what")}
    indicator: Indicator
    summary: Summary
    lead: Text
    now: Text
    add_label: Text
    replace_label: Text
    delete_description: Text
    covered: Text


class MriContrastText(_Model):
    placeholders = {"lead": ("what",), "update_label": ("regions",), "update_description": ("what", "target")}
    indicator: Indicator
    summary: Summary
    lead: Text
    now: Text
    update_label: Text
    update_description: Text


class DrugClasses(_Model):
    nsaid: Text
    opioid: Text
    both: Text


class AnalgesicText(_Model):
    placeholders = {"lead_warning": ("what", "drug_class"), "lead_info": ("what", "drug_class")}
    summary_warning: Summary
    summary_info: Summary
    lead_warning: Text
    lead_info: Text
    now_warning: Text
    now_info: Text
    drug_classes: DrugClasses


class ModalityNames(_Model):
    MR: Text
    CT: Text
    XR: Text


class UnnamedOrders(_Model):
    ServiceRequest: Text
    MedicationRequest: Text
    other: Text


class OrdersText(_Model):
    lumbar_imaging: LumbarImagingText
    mri_contrast: MriContrastText
    analgesic: AnalgesicText
    modality_names: ModalityNames
    unnamed: UnnamedOrders


class CardContent(_Model):
    """Everything a clinician reads on a card."""

    source: SourceText
    guidance: GuidanceLinkText
    levels: LevelsText
    detail: DetailText
    management: list[ManagementText] = Field(min_length=1)
    mri: MriText
    override_reasons: list[OverrideReasonText] = Field(min_length=1)
    override_reason_system: OverrideReasonSystem
    references: ReferencesText
    orders: OrdersText


# --- the guidance page -------------------------------------------------------------------------


class Headed(_Model):
    heading: Text
    text: Text


class ComparisonRow(_Model):
    feature: Text
    cells: list[Text] = Field(min_length=3, max_length=3)


class ComparisonText(_Model):
    heading: Text
    caption: Text
    feature_header: Text
    columns: list[Text] = Field(min_length=3, max_length=3)  # MS-related, mechanical, radicular
    rows: list[ComparisonRow] = Field(min_length=1)


class ListText(_Model):
    heading: Text
    lead: Text | None = None
    items: list[Text] = Field(min_length=1)


class MechanismText(_Model):
    mechanism: Text
    text: Text


class GuidanceManagement(_Model):
    heading: Text
    lead: Text
    items: list[MechanismText] = Field(min_length=1)


class NoteText(_Model):
    text: Text


class GuidanceSource(_Model):
    heading: Text
    text: Text
    references_heading: Text


class GuidanceContent(_Model):
    """The full guidance page (served at /guidance/ms-back-pain)."""

    title: Text
    intro: Text
    urgent: Headed
    comparison: ComparisonText
    red_flags: ListText
    evaluation: ListText
    management: GuidanceManagement
    management_note: NoteText
    source: GuidanceSource


# --- loading -----------------------------------------------------------------------------------


def default_cards_dir() -> Path:
    """The repository's cards/ folder in a checkout, or the copy packed into the wheel."""
    checkout = Path(__file__).resolve().parents[2] / "cards"
    if (checkout / CONTENT_FILE).is_file():
        return checkout
    return Path(str(resources.files("cds_service").joinpath("_content", "cards")))


M = TypeVar("M", bound=BaseModel)


def _load(model: type[M], path: Path) -> M:
    with path.open("rb") as handle:
        raw = tomllib.load(handle)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(top)'}: {error['msg']}" for error in exc.errors()
        )
        raise CardContentError(f"{path.name} does not match its schema: {problems}") from None


@cache
def load_card_content(cards_dir: Path | None = None) -> CardContent:
    return _load(CardContent, (cards_dir or default_cards_dir()) / CONTENT_FILE)


@cache
def load_guidance_content(cards_dir: Path | None = None) -> GuidanceContent:
    return _load(GuidanceContent, (cards_dir or default_cards_dir()) / GUIDANCE_FILE)
