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
    Column("study_id", String(64), nullable=False),
    Column("participant_id", String(32), ForeignKey("participants.participant_id"), primary_key=True),
    Column("trial_index", Integer, primary_key=True),
    Column("arm", String(16), nullable=False),
    Column("case_id", String(128), nullable=False),
    Column("true_label", String(64), nullable=False),
    Column("ai_label", String(64)),
    Column("ai_confidence", Float),
    Column("ai_correct", Boolean),
    Column("advice_source", String(16)),
    Column("explanation_method", String(32)),
    Column("overlay_shown", Boolean),
    Column("initial_label", String(64)),
    Column("initial_confidence", Integer),
    Column("final_label", String(64), nullable=False),
    Column("final_confidence", Integer, nullable=False),
    Column("final_correct", Boolean, nullable=False),
    Column("rt_initial_ms", Integer),
    Column("rt_final_ms", Integer, nullable=False),
    Column("started_at", String(32), nullable=False),
    Column("completed_at", String(32), nullable=False),
    Column("overlay_toggles", Integer, nullable=False, default=0),
    Column("record_id", String(32), nullable=False, unique=True),  # pseudonymous id when rated by peers
    # 0-100 probability of the positive class (asked, or derived from label and confidence): an ROC rating
    Column("initial_score", Integer),
    Column("final_score", Integer),
    Column("overlay_look", String(16)),
    Column("viewer_max_zoom", Float),
    Column("viewer_actions", Integer),
    Column("viewer_window_changes", Integer),
)

ratings = Table(
    "ratings", metadata,
    Column("study_id", String(64), nullable=False),
    Column("rater_id", String(32), ForeignKey("participants.participant_id"), primary_key=True),
    Column("target_kind", String(16), nullable=False),
    Column("target_id", String(64), primary_key=True),
    Column("target_arm", String(16), nullable=False),
    Column("item", String(64), primary_key=True),
    Column("score", Integer, nullable=False),
    Column("scale_min", Integer, nullable=False),
    Column("scale_max", Integer, nullable=False),
    Column("rated_at", String(32), nullable=False),
    Column("target_source", String(32), nullable=False),  # peer | pilot | vignette | fallback_vignette
)

questionnaire_answers = Table(
    "questionnaire_answers", metadata,
    Column("study_id", String(64), nullable=False),
    Column("participant_id", String(32), ForeignKey("participants.participant_id"), primary_key=True),
    Column("instrument", String(64), primary_key=True),
    Column("item", String(64), primary_key=True),
    Column("response", String(64), nullable=False),
    Column("answered_at", String(32), nullable=False),
)

rating_load = Table(
    "rating_load", metadata,
    Column("study_id", String(64), primary_key=True),
    Column("target_id", String(64), primary_key=True),
    Column("assigned", Integer, nullable=False, default=0),
)

DERIVED = (trials, ratings, questionnaire_answers, rating_load)
