"""`export_study`: the study's data as analysis-ready files with a fixed column contract.

Files (CSV, or Parquet with ``fmt="parquet"``), each starting with exactly the contracted
columns, in order, extra columns after them; plus ``codebook.md`` describing every column and
``flow.json`` with CONSORT counts. No tokens (only their hashes are stored, and those are not
exported either) and no free text.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, select

from xai_lab.errors import ConfigError
from xai_lab.private_files import private_staging, write_private_csv, write_private_text
from xai_lab.store.schema import participants, questionnaire_answers, ratings, studies, trials

COLUMNS: dict[str, dict[str, str]] = {
    "participants": {
        "study_id": "study id from the design file",
        "participant_id": "pseudonymous participant id (random; not the invitation token)",
        "arm": "allocated arm (verify | rely | control), or arm order for within designs, e.g. verify>rely",
        "stratum": "allocation stratum, e.g. role=nurse ('all' without strata)",
        "role": "self-reported role (profile)",
        "specialty": "self-reported specialty (profile)",
        "experience_years": "self-reported years of experience, as the band chosen (e.g. 3-5)",
        "prior_ai_use": "self-reported prior use of AI tools (profile)",
        "status": "completed | withdrawn | in_progress",
        "enrolled_at": "enrolment time, ISO 8601 UTC",
        "completed_at": "completion time, ISO 8601 UTC (empty unless completed)",
        "withdrawn_at": "withdrawal time, ISO 8601 UTC (empty unless withdrawn)",
        "attention_failures": "attention checks answered wrongly",
        "pilot": "true for pilot participants (their records seed peer rating)",
        "enrolled_via": "how the participant arrived: code (the shared link), invite (a personal link from "
                        "`xai-lab invite`), api, or simulation (`xai-lab simulate`: not a person; `xai-lab analyze` "
                        "leaves them out unless --rehearsal)",
    },
    "trials": {
        "study_id": "study id", "participant_id": "pseudonymous participant id",
        "arm": "arm this trial was read under (verify | rely | control)",
        "trial_index": "0-based position in the participant's (shuffled) sequence; practice not included",
        "case_id": "image id in the dataset", "true_label": "ground-truth class name",
        "ai_label": "class the AI advised (empty in control)",
        "ai_confidence": "AI's calibrated probability for its label, 0-1 (empty in control)",
        "ai_correct": "ai_label == true_label (empty in control)",
        "advice_source": "model (the model's real output) or planted (deliberately wrong advice)",
        "explanation_method": "saliency method of the overlay shown (empty when no overlay was shown)",
        "overlay_shown": "whether the overlay was available on this trial (empty in control)",
        "overlay_look": "how the map was drawn: contour | side_by_side | heatmap (empty when no overlay was shown)",
        "initial_label": "verify only: the participant's label before seeing the AI",
        "initial_confidence": "verify only: confidence 0-100 before seeing the AI",
        "final_label": "the participant's final label", "final_confidence": "final confidence, 0-100",
        "final_correct": "final_label == true_label",
        "rt_initial_ms": "verify only: server-measured ms from showing the image to the initial answer",
        "rt_final_ms": "server-measured ms from showing the final step to its answer",
        "started_at": "when the trial was first shown, ISO 8601 UTC",
        "completed_at": "when the final answer was recorded, ISO 8601 UTC",
        "overlay_toggles": "times the participant showed or hid the overlay",
        "viewer_max_zoom": "highest zoom the participant used on this case (1 = not zoomed)",
        "viewer_actions": "zoom and pan actions in the viewer on this case (both looks in verify)",
        "viewer_window_changes": "contrast (window/level) preset changes on this case",
        "record_id": "pseudonymous id of this trial when peers rate it (ratings.target_id)",
        "initial_score": "verify only: the initial reading as the probability 0-100 that the case shows score_class",
        "final_score": "the final reading as the probability 0-100 that the case shows score_class (an ROC rating)",
        "score_class": "the class whose probability initial_score and final_score give (the positive class)",
    },
    "ratings": {
        "study_id": "study id", "rater_id": "pseudonymous id of the rating participant",
        "target_kind": "vignette | peer_record", "target_id": "vignette id or record_id of the rated trial",
        "target_arm": "how the rated clinician used AI: verify | rely | control",
        "item": "rating item id from the design", "score": "the rating",
        "scale_min": "lowest possible score", "scale_max": "highest possible score",
        "rated_at": "ISO 8601 UTC",
        "target_source": "peer | pilot | vignette | fallback_vignette (vignette shown because too few peer "
                         "records existed yet)",
    },
    "questionnaire": {
        "study_id": "study id", "participant_id": "pseudonymous participant id",
        "instrument": "questionnaire id from the design", "item": "item id", "response": "the answer (Likert score)",
        "answered_at": "ISO 8601 UTC",
    },
}

# The columns `xai-lab analyze` requires (the export's contract); every other column is optional for
# the analysis (added in later versions, or not needed), and a metric that needs an absent one is null
# with a note. The codebook marks them.
CONTRACT: dict[str, tuple[str, ...]] = {
    "participants": ("participant_id", "arm", "stratum", "status"),
    "trials": ("participant_id", "arm", "trial_index", "case_id", "true_label", "ai_label", "initial_label",
               "initial_confidence", "final_label", "final_confidence"),
    "ratings": ("rater_id", "target_id", "target_arm", "item", "score", "scale_min", "scale_max"),
    "questionnaire": (),
}

PROFILE_FIELDS = ("role", "specialty", "experience_years", "prior_ai_use")


def export_study(engine: Engine, study_id: str, out_dir: Path, fmt: str = "csv") -> dict[str, int]:
    """Write the export files; returns rows per file."""
    if fmt not in ("csv", "parquet"):
        raise ConfigError(f"--format must be csv or parquet, got {fmt!r}")
    with engine.connect() as connection:
        registered = connection.execute(select(studies.c.design, studies.c.case_set)
                                        .where(studies.c.study_id == study_id)).first()
        if registered is None:
            known = [row[0] for row in connection.execute(select(studies.c.study_id))]
            raise ConfigError(f"no study {study_id!r} in the database; known studies: {', '.join(known) or 'none'}")
        design, case_set = registered
        question, positive = _score_settings(design, case_set)
        tables = {
            "participants": _participants(connection, study_id),
            "trials": _with_scores(_frame(connection, trials, trials.c.study_id == study_id,
                                          [trials.c.participant_id, trials.c.trial_index]), question, positive),
            "ratings": _frame(connection, ratings, ratings.c.study_id == study_id,
                              [ratings.c.rater_id, ratings.c.target_id, ratings.c.item]),
            "questionnaire": _frame(connection, questionnaire_answers, questionnaire_answers.c.study_id == study_id,
                                    [questionnaire_answers.c.participant_id, questionnaire_answers.c.instrument,
                                     questionnaire_answers.c.item]),
        }
        flow = consort_flow(connection, study_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, frame in tables.items():
        frame = frame[list(COLUMNS[name]) + [c for c in frame.columns if c not in COLUMNS[name]]]
        path = out_dir / f"{name}.{fmt}"
        # participants' data: owner-only (0600), replaced atomically; CSV cells never run as formulas
        if fmt == "csv":
            write_private_csv(path, frame)
        else:
            staging = private_staging(path)
            frame.to_parquet(staging, index=False)
            staging.replace(path)
        counts[name] = len(frame)
    write_private_text(out_dir / "flow.json", json.dumps(flow, indent=2) + "\n")
    # the registered design: `xai-lab analyze` reads the declared estimand ([analysis]) and allocation from it
    write_private_text(out_dir / "design.json", json.dumps(design, indent=2) + "\n")
    write_private_text(out_dir / "codebook.md", codebook(study_id, question, positive))
    return counts


def export_zip(engine: Engine, study_id: str, fmt: str = "csv") -> bytes:
    """The export files (data, codebook, flow) in one zip, for a download button."""
    with tempfile.TemporaryDirectory() as folder:
        export_study(engine, study_id, Path(folder), fmt)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(Path(folder).iterdir()):
                archive.write(path, path.name)
    return buffer.getvalue()


def _score_settings(design: dict | None, case_set: dict | None) -> tuple[str, str]:
    """What the trial slider asked (design `[trials] score`) and the positive class (the second class)."""
    names = (case_set or {}).get("class_names") or []
    return ((design or {}).get("trials") or {}).get("score", "confidence"), (names[-1] if len(names) > 1 else "")


def _with_scores(frame: pd.DataFrame, question: str, positive: str) -> pd.DataFrame:
    """Fill scores of trials recorded before scores were stored, from label and confidence (then the
    question was always confidence): P(positive) = c for a positive label, else 100 - c."""
    frame = frame.copy()
    for phase in ("initial", "final"):
        derived = frame[f"{phase}_confidence"].where(frame[f"{phase}_label"] == positive,
                                                     100 - frame[f"{phase}_confidence"])
        frame[f"{phase}_score"] = frame[f"{phase}_score"].fillna(derived)
    frame["score_class"] = positive
    return frame.convert_dtypes()


def _frame(connection, table, where, order) -> pd.DataFrame:
    rows = connection.execute(select(table).where(where).order_by(*order)).mappings().all()
    return pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in table.columns]).convert_dtypes()


def _participants(connection, study_id: str) -> pd.DataFrame:
    # People who declined, or opened a link and never answered the consent screen, are counted in
    # flow.json but are not participants: no row here.
    query = (select(participants).where(participants.c.study_id == study_id, participants.c.status != "declined",
                                        ~((participants.c.status == "in_progress")
                                          & (participants.c.step_key == "consent")))
             .order_by(participants.c.enrolled_at, participants.c.participant_id))
    rows = []
    for row in connection.execute(query).mappings():
        profile = row["profile"] or {}
        rows.append({"study_id": row["study_id"], "participant_id": row["participant_id"], "arm": row["arm"],
                     "stratum": row["stratum"], **{f: profile.get(f) for f in PROFILE_FIELDS},
                     "status": row["status"], "enrolled_at": row["enrolled_at"],
                     "completed_at": row["completed_at"], "withdrawn_at": row["withdrawn_at"],
                     "attention_failures": row["attention_failures"], "pilot": row["pilot"],
                     "enrolled_via": row["enrolled_via"]})
    return pd.DataFrame(rows, columns=list(COLUMNS["participants"])).convert_dtypes()


def consort_flow(connection, study_id: str) -> dict:
    """CONSORT-style counts: who opened a link, who consented or declined, allocation and outcome per arm.

    ``enrolled`` counts every participant record, including people who opened a link and left
    before answering the consent screen (``opened_not_consented``): they are counted apart and
    are not participants; ``consented`` is the number who agreed.
    """
    rows = connection.execute(select(participants.c.status, participants.c.arm, participants.c.step_key)
                              .where(participants.c.study_id == study_id)).all()
    by_arm: dict[str, dict[str, int]] = {}
    for status, arm, _ in rows:
        if arm is not None:
            counts = by_arm.setdefault(arm, {"allocated": 0, "completed": 0, "withdrawn": 0, "in_progress": 0})
            counts["allocated"] += 1
            counts[status] = counts.get(status, 0) + 1
    opened = sum(_not_consented(status, step) for status, _, step in rows)
    declined = sum(status == "declined" for status, _, _ in rows)
    return {"enrolled": len(rows), "opened_not_consented": opened, "declined_consent": declined,
            "consented": len(rows) - opened - declined,
            "not_yet_allocated": sum(a is None and s == "in_progress" and not _not_consented(s, k) for s, a, k in rows),
            "by_arm": by_arm}


def _not_consented(status: str, step_key: str) -> bool:
    return status == "in_progress" and step_key == "consent"


def codebook(study_id: str, question: str = "confidence", positive: str = "") -> str:
    asked = (f"On each trial the slider asked how likely the case shows `{positive}` (0-100); initial_score and "
             "final_score are that answer, and initial/final_confidence are the confidence in the chosen label "
             "derived from it (p for the positive label, else 100 - p)." if question == "probability" else
             "On each trial the slider asked how sure the participant was of their own answer (0-100); "
             f"initial_score and final_score are derived from it as the probability of `{positive}`: the "
             "confidence when that label was chosen, else 100 - confidence.")
    lines = [f"# Codebook: export of study `{study_id}`", "", asked, "",
             "Timestamps are ISO 8601 in UTC. Empty cells mean the field does not apply (e.g. initial_* outside the "
             "verify arm). Labels are the dataset's class names. No invitation tokens and no free text are exported.",
             "`design.json` is the registered study design (its `analysis` section declares the primary estimand).",
             "`flow.json` holds CONSORT counts: `enrolled` (every opened link), `opened_not_consented` (left before "
             "answering the consent screen: not participants), `declined_consent`, `consented`, `not_yet_allocated` "
             "(consented, profile not yet given) and allocation and outcome per arm. `participants` lists only people "
             "who consented.",
             "In CSV files, a text cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is written "
             "with a leading apostrophe (`'=...`), so that spreadsheet programs show it as text instead of running it "
             "as a formula; strip that apostrophe to recover the value. Parquet files store values unchanged.",
             "Files are created readable by their owner only (mode 0600): they hold participants' answers.", ""]
    lines += ["Column `contract`: *required* columns are the ones `xai-lab analyze` needs; *optional* ones may be "
              "absent (older exports, other tools): the metrics that need them are then null, with a note.", ""]
    for name, columns in COLUMNS.items():
        lines += [f"## {name}", "", "| column | contract | meaning |", "|---|---|---|"]
        lines += [f"| `{column}` | {'required' if column in CONTRACT[name] else 'optional'} | {meaning} |"
                  for column, meaning in columns.items()]
        lines.append("")
    return "\n".join(lines)
