"""The study database's tables (SQLAlchemy Core).

`events` is the record: append-only, one row per thing that happened (enrolment, a step
shown, an answer, an allocation, a withdrawal), with its payload as JSON. Everything else is
derived from it and can be rebuilt by replaying it (`xai_lab.study.registration.rebuild_derived`):
`participants` (status, arm, current step), `trials`, `ratings`, `questionnaire_answers`,
`rating_load`. `allocation_slots` and `strata` hold the concealed allocation sequence.
The only deletion is the one a participant asks for by withdrawing under a consent text
that promises deletion: their rows go, and a content-free tombstone event stays.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()


def described(meaning: str) -> dict[str, str]:
    """A column's meaning, kept on the column itself: the export's codebook reads it from here, so a
    column is declared once (name, type, meaning) for the database, the export and the codebook."""
    return {"codebook": meaning}


def column_meanings(table: Table) -> dict[str, str]:
    """The exported columns of a derived table, in declaration order (the export's column contract),
    with their meanings."""
    return {column.name: column.info["codebook"] for column in table.columns}

schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))

studies = Table(
    "studies", metadata,
    Column("study_id", String(64), primary_key=True),
    Column("title", Text, nullable=False),
    Column("design_sha256", String(64), nullable=False),
    Column("design", JSON, nullable=False),
    Column("case_set", JSON, nullable=False),
    # Seeds the allocation sequence; never exported or shown, so the sequence is concealed.
    Column("allocation_secret", String(64), nullable=False),
    Column("created_at", String(32), nullable=False),
)

participants = Table(
    "participants", metadata,
    Column("participant_id", String(32), primary_key=True),
    Column("study_id", String(64), ForeignKey("studies.study_id"), nullable=False),
    Column("token_sha256", String(64), nullable=False, unique=True),  # the token itself is never stored
    Column("status", String(16), nullable=False),  # in_progress | completed | withdrawn | declined
    Column("stratum", String(200)),
    Column("arm", String(64)),
    Column("profile", JSON),
    Column("plan", JSON),  # the ordered step keys, fixed at allocation
    Column("step_index", Integer, nullable=False, default=0),
    Column("step_key", String(64), nullable=False),
    Column("shown_at", String(32)),
    Column("shown_ns", BigInteger),
    Column("shown_clock", String(64)),
    Column("pending", JSON),  # a verify trial's initial answer until its final answer arrives
    Column("rating_targets", JSON),
    Column("attention_failures", Integer, nullable=False, default=0),
    Column("pilot", Boolean, nullable=False, default=False),
    # how they arrived: code (the study's shared link) | invite (a personal link) | simulation | api
    Column("enrolled_via", String(16)),
    Column("enrolled_at", String(32), nullable=False),
    # the version (xai_lab.study.design.consent_version) of the consent text last agreed to
    Column("consent_version", String(16)),
    Column("completed_at", String(32)),
    Column("withdrawn_at", String(32)),
    Index("ix_participants_study", "study_id", "status"),
)

events = Table(
    "events", metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=True),
    Column("study_id", String(64), nullable=False),
    Column("participant_id", String(32), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("step_key", String(64)),
    Column("idempotency_key", String(128)),
    Column("payload", JSON, nullable=False),
    Column("created_at", String(32), nullable=False),
    UniqueConstraint("participant_id", "idempotency_key", name="uq_events_idempotency"),
    Index("ix_events_participant", "participant_id", "event_id"),
)

# Recruitment panels' ids (e.g. Prolific's PROLIFIC_PID), apart from every answer: never in the event
# log or a data export, only in the payment file (xai_lab.study.recruitment). One panel id is one
# participant: a second visit resumes it.
panel_entries = Table(
    "panel_entries", metadata,
    Column("participant_id", String(32), ForeignKey("participants.participant_id"), primary_key=True),
    Column("study_id", String(64), nullable=False),
    Column("panel", String(16), nullable=False),
    Column("panel_id", String(128), nullable=False),
    Column("parameters", JSON, nullable=False),  # every captured URL parameter, the id included
    Column("entered_at", String(32), nullable=False),
    Column("visits", Integer, nullable=False, default=1),
    Column("last_seen_at", String(32), nullable=False),
    UniqueConstraint("study_id", "panel_id", name="uq_panel_entries_id"),
)

strata = Table(
    "strata", metadata,
    Column("study_id", String(64), primary_key=True),
    Column("stratum", String(200), primary_key=True),
    Column("next_slot", Integer, nullable=False, default=0),  # locked row: serialises allocation
)

allocation_slots = Table(
    "allocation_slots", metadata,
    Column("study_id", String(64), primary_key=True),
    Column("stratum", String(200), primary_key=True),
    Column("slot", Integer, primary_key=True),
    Column("block", Integer, nullable=False),
    Column("block_size", Integer, nullable=False),
    Column("arm", String(64), nullable=False),
    Column("participant_id", String(32), unique=True),
)

trials = Table(
    "trials", metadata,
    Column("study_id", String(64), nullable=False, info=described("study id")),
    Column("participant_id", String(32), ForeignKey("participants.participant_id"), primary_key=True,
           info=described('pseudonymous participant id')),
    Column("arm", String(16), nullable=False,
           info=described('arm this trial was read under (verify | rely | control)')),
    Column("trial_index", Integer, primary_key=True,
           info=described("0-based position in the participant's (shuffled) sequence; practice not included")),
    Column("case_id", String(128), nullable=False, info=described("image id in the dataset")),
    Column("true_label", String(64), nullable=False, info=described("ground-truth class name")),
    Column("ai_label", String(64), info=described("class the AI advised (empty in control)")),
    Column("ai_confidence", Float,
           info=described("AI's calibrated probability for its label, 0-1 (empty in control)")),
    Column("ai_correct", Boolean, info=described("ai_label == true_label (empty in control)")),
    Column("advice_source", String(16),
           info=described("model (the model's real output) or planted (deliberately wrong advice)")),
    Column("explanation_method", String(32),
           info=described('saliency method of the overlay shown (empty when no overlay was shown)')),
    Column("overlay_shown", Boolean,
           info=described('whether the overlay was available on this trial (empty in control)')),
    Column("overlay_look", String(16),
           info=described('how the map was drawn: contour | side_by_side | heatmap (empty when no overlay was shown)')),
    Column("initial_label", String(64),
           info=described("verify only: the participant's label before seeing the AI")),
    Column("initial_confidence", Integer, info=described("verify only: confidence 0-100 before seeing the AI")),
    Column("final_label", String(64), nullable=False,
           info=described("the participant's final label")),
    Column("final_confidence", Integer, nullable=False, info=described("final confidence, 0-100")),
    Column("final_correct", Boolean, nullable=False, info=described("final_label == true_label")),
    Column("rt_initial_ms", Integer,
           info=described('verify only: server-measured ms from showing the image to the initial answer')),
    Column("rt_final_ms", Integer, nullable=False,
           info=described('server-measured ms from showing the final step to its answer')),
    Column("started_at", String(32), nullable=False, info=described("when the trial was first shown, ISO 8601 UTC")),
    Column("completed_at", String(32), nullable=False,
           info=described('when the final answer was recorded, ISO 8601 UTC')),
    Column("overlay_toggles", Integer, nullable=False, default=0,
           info=described('times the participant showed or hid the overlay')),
    Column("viewer_max_zoom", Float, info=described("highest zoom the participant used on this case (1 = not zoomed)")),
    Column("viewer_actions", Integer,
           info=described('zoom and pan actions in the viewer on this case (both looks in verify)')),
    Column("viewer_window_changes", Integer, info=described("contrast (window/level) preset changes on this case")),
    Column("record_id", String(32), nullable=False, unique=True,
           info=described('pseudonymous id of this trial when peers rate it (ratings.target_id)')),
    Column("initial_score", Integer,
           info=described('verify only: the initial reading as the probability 0-100 that the case shows score_class')),
    Column("final_score", Integer,
           info=described('the final reading as the probability 0-100 that the case shows score_class '
                          '(an ROC rating)')),
    Column("conditions", JSON, info=described("designs with [factors]: the level of every factor this trial was "
                                              "read under (exported as factor_<name> columns)")),
    Column("advice_label", String(80), info=described("who the screen said the advice came from, e.g. AI (empty "
                                                      "when no advice was shown)")),
    Column("confidence_display", String(16), info=described("how the AI's confidence was shown: percent | verbal | "
                                                            "none (empty when no advice was shown)")),
    Column("ai_requested", Boolean, info=described("on_demand workflow only: whether the reader asked for the AI "
                                                   "(empty in other workflows)")),
    Column("advice_model", String(64), info=described("the prepared model whose advice was shown (empty when none "
                                                      "was shown)")),
    Column("map_source", String(80), info=described("whose map was shown: model (the advising model's own), "
                                                    "randomised (a parameter-randomised copy's) or model:NAME (empty "
                                                    "when no map was shown)")),
    Column("rt_ai_request_ms", Integer, info=described("on_demand workflow only: server-measured ms from showing "
                                                       "the case to the request for the AI (empty if not asked)")),
    Column("hidden_ms", Integer, info=described("ms the browser tab was hidden while this trial was on screen "
                                                "(both looks in verify; empty when the browser did not report it)")),
    Column("blurred_ms", Integer, info=described("ms the window was without focus while this trial was on screen "
                                                 "(includes hidden time)")),
    Column("viewport_width", Integer, info=described("the browser viewport's width in CSS pixels on this trial")),
    Column("viewport_height", Integer, info=described("the browser viewport's height in CSS pixels on this trial")),
)

ratings = Table(
    "ratings", metadata,
    Column("study_id", String(64), nullable=False, info=described("study id")),
    Column("rater_id", String(32), ForeignKey("participants.participant_id"), primary_key=True,
           info=described('pseudonymous id of the rating participant')),
    Column("target_kind", String(16), nullable=False, info=described("vignette | peer_record")),
    Column("target_id", String(64), primary_key=True, info=described("vignette id or record_id of the rated trial")),
    Column("target_arm", String(16), nullable=False,
           info=described('how the rated clinician used AI: verify | rely | control')),
    Column("item", String(64), primary_key=True, info=described("rating item id from the design")),
    Column("score", Integer, nullable=False, info=described("the rating")),
    Column("scale_min", Integer, nullable=False, info=described("lowest possible score")),
    Column("scale_max", Integer, nullable=False, info=described("highest possible score")),
    Column("rated_at", String(32), nullable=False, info=described("ISO 8601 UTC")),
    Column("target_source", String(32), nullable=False,
           info=described('peer | pilot | vignette | fallback_vignette (vignette shown because too few peer '
                          'records existed yet)')),
)

questionnaire_answers = Table(
    "questionnaire_answers", metadata,
    Column("study_id", String(64), nullable=False, info=described("study id")),
    Column("participant_id", String(32), ForeignKey("participants.participant_id"), primary_key=True,
           info=described('pseudonymous participant id')),
    Column("instrument", String(64), primary_key=True, info=described("questionnaire id from the design")),
    Column("item", String(64), primary_key=True, info=described("item id")),
    Column("response", String(64), nullable=False, info=described("the answer (Likert score)")),
    Column("answered_at", String(32), nullable=False, info=described("ISO 8601 UTC")),
)

rating_load = Table(
    "rating_load", metadata,
    Column("study_id", String(64), primary_key=True),
    Column("target_id", String(64), primary_key=True),
    Column("assigned", Integer, nullable=False, default=0),
)

DERIVED = (trials, ratings, questionnaire_answers, rating_load)
