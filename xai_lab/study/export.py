"""`export_study`: the study's data as analysis-ready files with a fixed column contract.

The export is a Psych-DS dataset (the standard jsPsych, lab.js and DataPipe write):
``dataset_description.json`` (a schema.org Dataset whose ``variableMeasured`` lists every column with
its codebook meaning), ``README.md``, and the tables under ``data/`` with Psych-DS keyword names,
``data/study-<id>_description-<table>_data.csv`` (or ``.parquet`` with ``fmt="parquet"``; Psych-DS
itself knows CSV only). Each table starts with exactly the contracted columns, in order, extra
columns after them. Beside them: ``codebook.md``, ``flow.json`` (CONSORT counts), ``design.json``,
``consent_versions.json`` and ``design_history.json``, listed in ``.psychdsignore``. No tokens (only
their hashes are stored, and those are not exported either) and no free text. `table_file` finds a
table in this layout or in the flat one (``trials.csv``) that exports had before.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, func, select

from xai_lab.errors import ConfigError
from xai_lab.private_files import private_staging, write_private_csv, write_private_text
from xai_lab.store.schema import column_meanings, events, participants, questionnaire_answers, ratings, studies, trials
from xai_lab.study.cases import CaseSet
from xai_lab.study.design import StudyDesign
from xai_lab.study.recruitment import payment_rows
from xai_lab.study.registration import amendments

COLUMNS: dict[str, dict[str, str]] = {
    "participants": {
        "study_id": "study id from the design file",
        "participant_id": "pseudonymous participant id (random; not the invitation token)",
        "arm": "allocated arm (verify | rely | control), or arm order for within designs, e.g. verify>rely; with "
               "[factors], the participant's workflow (verify | rely | control | on_demand)",
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
        "enrolled_via": "how the participant arrived: code (the shared link), panel (the shared link from a "
                        "recruitment panel, whose id is only in the payment file), invite (a personal link from "
                        "`xai-lab invite`), api, or simulation (`xai-lab simulate`: not a person; `xai-lab analyze` "
                        "leaves them out unless --rehearsal)",
        "consent_version": "the version of the consent text the participant last agreed to (the first 12 hex "
                           "digits of its SHA-256; the texts are in consent_versions.json)",
        "consent_versions": "every version they agreed to, in order, separated by > (e.g. 3f2a...>9b1c... after "
                            "agreeing to an amended text)",
        "allocation_unit": "what allocation assigned: the arm or arm order; with [factors], the between levels "
                           "joined by + and, with within factors, @ and the rotation, e.g. verify@1 "
                           "(docs/studies.md)",
    },
    # the derived tables' columns and meanings are declared once, on the columns (store/schema.py)
    "trials": {**column_meanings(trials),
               "score_class": "the class whose probability initial_score and final_score give (the positive class)"},
    "ratings": column_meanings(ratings),
    "questionnaire": column_meanings(questionnaire_answers),
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
        design = registered.design  # written as stored to design.json, which `analyze` reads
        # read as the records the pages serve from, so a stored design of any schema reads the same way
        record = StudyDesign.from_json(registered.design)
        question, positive = _score_settings(record, CaseSet.from_json(registered.case_set))
        tables = {
            "participants": _participants(connection, study_id, record),
            "trials": _with_factor_columns(_with_scores(_frame(connection, trials, trials.c.study_id == study_id,
                                                               [trials.c.participant_id, trials.c.trial_index]),
                                                        question, positive), record),
            "ratings": _frame(connection, ratings, ratings.c.study_id == study_id,
                              [ratings.c.rater_id, ratings.c.target_id, ratings.c.item]),
            "questionnaire": _frame(connection, questionnaire_answers, questionnaire_answers.c.study_id == study_id,
                                    [questionnaire_answers.c.participant_id, questionnaire_answers.c.instrument,
                                     questionnaire_answers.c.item]),
        }
        flow = consort_flow(connection, study_id)
        consents = consent_texts(connection, study_id, record)
        history = design_history(connection, study_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / DATA_DIR).mkdir(mode=0o700, exist_ok=True)  # participants' data: owner-only, as the files
    counts, written = {}, {}
    for name, frame in tables.items():
        frame = frame[list(COLUMNS[name]) + [c for c in frame.columns if c not in COLUMNS[name]]]
        written[name] = frame
        path = table_path(out_dir, study_id, name, fmt)
        # participants' data: owner-only (0600), replaced atomically; CSV cells never run as formulas
        if fmt == "csv":
            write_private_csv(path, frame)
        else:
            staging = private_staging(path)
            frame.to_parquet(staging, index=False)
            staging.replace(path)
        counts[name] = len(frame)
    write_private_text(out_dir / "flow.json", json.dumps(flow, indent=2) + "\n")
    write_private_text(out_dir / "consent_versions.json", json.dumps(consents, indent=2) + "\n")
    write_private_text(out_dir / "design_history.json", json.dumps(history, indent=2) + "\n")
    # the registered design: `xai-lab analyze` reads the declared estimand ([analysis]) and allocation from it
    write_private_text(out_dir / "design.json", json.dumps(design, indent=2) + "\n")
    write_private_text(out_dir / "codebook.md", codebook(study_id, question, positive, record))
    write_private_text(out_dir / "dataset_description.json",
                       json.dumps(dataset_description(record, written), indent=2) + "\n")
    write_private_text(out_dir / "README.md", _readme(record))
    write_private_text(out_dir / ".psychdsignore", "\n".join(SIDE_FILES) + "\n")
    return counts


# Psych-DS: the data files live under data/ with keyword names; the lab's other files are listed in
# .psychdsignore, so the validator checks only what its specification covers.
DATA_DIR = "data"
SIDE_FILES = ("codebook.md", "flow.json", "design.json", "consent_versions.json", "design_history.json")
PSYCHDS_CONTEXT = "http://schema.org/"


def table_path(out_dir: Path, study_id: str, name: str, fmt: str = "csv") -> Path:
    """Where the export writes a table: Psych-DS keyword values are letters and digits only."""
    keyword = "".join(ch for ch in study_id if ch.isalnum()) or "study"
    return out_dir / DATA_DIR / f"study-{keyword}_description-{name}_data.{fmt}"


def table_file(directory: Path, name: str) -> Path | None:
    """A table of an export: the Psych-DS layout (data/..._description-NAME_data.csv or .parquet), or the
    flat layout of earlier exports (NAME.csv, NAME.parquet); None when the export lacks it."""
    for flat in (directory / f"{name}.csv", directory / f"{name}.parquet"):
        if flat.is_file():
            return flat
    for fmt in ("csv", "parquet"):
        found = sorted((directory / DATA_DIR).glob(f"study-*_description-{name}_data.{fmt}"))
        if found:
            return found[0]
    return None


def dataset_description(design: StudyDesign, tables: dict[str, pd.DataFrame]) -> dict:
    """The Psych-DS `dataset_description.json`: a schema.org Dataset whose variableMeasured names every
    column of every data file (the validator's containsAllColumns rule) with its codebook meaning."""
    meanings: dict[str, str] = {}
    for name, frame in tables.items():
        for column in frame.columns:
            meanings.setdefault(column, _meaning(name, column, design))
    return {
        "@context": PSYCHDS_CONTEXT, "@type": "Dataset", "name": design.title,
        "description": (f"Export of the xai-lab study {design.id!r}: participants, trials, peer ratings and "
                        f"questionnaire answers of a randomised experiment on clinicians' use of AI advice (arms "
                        f"{', '.join(design.arms)}). Column meanings are in codebook.md."),
        "schemaVersion": "Psych-DS 1.0.0", "identifier": design.id,
        "keywords": ["explainable AI", "clinician trust", "AI advice", "reliance", "xai-lab"],
        "variableMeasured": [{"@type": "PropertyValue", "name": column, "description": meaning}
                             for column, meaning in meanings.items()],
    }


def _meaning(table: str, column: str, design: StudyDesign) -> str:
    if column in COLUMNS[table]:
        return COLUMNS[table][column]
    if column.startswith("factor_"):
        return f"the level of factor {column.removeprefix('factor_')} this trial was read under"
    return f"{table}: {column.replace('_', ' ')}"


def _readme(design: StudyDesign) -> str:
    return (f"# {design.title}\n\nExport of the xai-lab study `{design.id}`, laid out as a Psych-DS dataset: the "
            "tables are under `data/`, their columns are described in `dataset_description.json` and in "
            "`codebook.md`. `flow.json` gives the participant flow (CONSORT), `design.json` the registered design, "
            "`consent_versions.json` every consent text and `design_history.json` the amendments.\n")


def export_zip(engine: Engine, study_id: str, fmt: str = "csv") -> bytes:
    """The export files (data, codebook, flow) in one zip, for a download button."""
    with tempfile.TemporaryDirectory() as folder:
        export_study(engine, study_id, Path(folder), fmt)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(Path(folder).rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def export_payment(engine: Engine, study_id: str, path: Path) -> int:
    """The recruitment panel's payment file: one row per panel participant (panel parameters, how the
    participation ended, the completion code given), kept out of the data export because it holds the
    panel's ids; no participant id, so it cannot be joined to the answers. Returns the rows written."""
    with engine.connect() as connection:
        stored = connection.execute(select(studies.c.design).where(studies.c.study_id == study_id)).scalar()
        if stored is None:
            raise ConfigError(f"no study {study_id!r} in the database; check --study (the id in the design file)")
        design = StudyDesign.from_json(stored)
        if design.recruitment.id_parameter is None:
            raise ConfigError(f"study {study_id!r} recruits through no panel ([recruitment] panel); it has no "
                              "payment file")
        rows = payment_rows(connection, design)
    columns = ["panel", *design.recruitment.parameters, "status", "entered_at", "completed_at", "withdrawn_at",
               "visits", "completion_code"]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private_csv(path, pd.DataFrame(rows, columns=columns))
    return len(rows)


def _score_settings(design: StudyDesign, case_set: CaseSet) -> tuple[str, str]:
    """What the trial slider asked (design `[trials] score`) and the positive class (the second class)."""
    names = case_set.class_names
    return design.trials.score, (names[-1] if len(names) > 1 else "")


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


def _with_factor_columns(frame: pd.DataFrame, design: StudyDesign) -> pd.DataFrame:
    """One `factor_<name>` column per declared factor (the level each trial was read under), and the
    levels as JSON text, so CSV and Parquet hold the same value."""
    frame = frame.copy()
    levels = [value if isinstance(value, dict) else {} for value in frame["conditions"]]
    for factor in design.factors:
        frame[f"factor_{factor.name}"] = pd.array([row.get(factor.name) for row in levels], dtype="string")
    frame["conditions"] = pd.array([json.dumps(row, sort_keys=True) if row else None for row in levels],
                                   dtype="string")
    return frame


def _frame(connection, table, where, order) -> pd.DataFrame:
    rows = connection.execute(select(table).where(where).order_by(*order)).mappings().all()
    return pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in table.columns]).convert_dtypes()


def _participants(connection, study_id: str, design: StudyDesign) -> pd.DataFrame:
    # People who declined, or opened a link and never answered the consent screen, are counted in
    # flow.json but are not participants: no row here.
    query = (select(participants).where(participants.c.study_id == study_id, participants.c.status != "declined",
                                        ~((participants.c.status == "in_progress")
                                          & (participants.c.step_key == "consent")))
             .order_by(participants.c.enrolled_at, participants.c.participant_id))
    rows, agreed = [], _agreed_versions(connection, study_id)
    for row in connection.execute(query).mappings():
        profile = row["profile"] or {}
        unit = row["arm"]
        arm = design.first_workflow(unit) if design.factors and unit else unit
        rows.append({"study_id": row["study_id"], "participant_id": row["participant_id"], "arm": arm,
                     "stratum": row["stratum"], **{f: profile.get(f) for f in PROFILE_FIELDS},
                     "status": row["status"], "enrolled_at": row["enrolled_at"],
                     "completed_at": row["completed_at"], "withdrawn_at": row["withdrawn_at"],
                     "attention_failures": row["attention_failures"], "pilot": row["pilot"],
                     "enrolled_via": row["enrolled_via"], "allocation_unit": unit,
                     "consent_version": row["consent_version"],
                     "consent_versions": ">".join(agreed.get(row["participant_id"], [])) or row["consent_version"]})
    return pd.DataFrame(rows, columns=list(COLUMNS["participants"])).convert_dtypes()


def _agreed_versions(connection, study_id: str) -> dict[str, list[str]]:
    """Per participant, the consent versions agreed to, in order (consent, then any reconsent)."""
    agreed: dict[str, list[str]] = {}
    query = select(events.c.participant_id, events.c.payload).where(
        events.c.study_id == study_id, events.c.kind.in_(("consent", "reconsent"))).order_by(events.c.event_id)
    for participant_id, payload in connection.execute(query):
        if payload.get("agree") and payload.get("version"):
            agreed.setdefault(participant_id, []).append(payload["version"])
    return agreed


def consent_texts(connection, study_id: str, design: StudyDesign) -> dict[str, str]:
    """Every version of the study's consent text, by version: the amended-away ones and the current."""
    texts = {change["consent_from"]: change["consent_text_from"] for change in amendments(connection, study_id)
             if "consent_text_from" in change}
    return {**texts, design.consent_version: design.consent_text}


def design_history(connection, study_id: str) -> dict:
    """When the first participant enrolled, and every amendment since (what changed, when; the consent
    texts themselves are in consent_versions.json): `analyze` flags an [analysis] changed after enrolment."""
    first = connection.execute(select(func.min(participants.c.enrolled_at))
                               .where(participants.c.study_id == study_id)).scalar()
    changes = [{key: value for key, value in change.items() if key != "consent_text_from"}
               for change in amendments(connection, study_id)]
    return {"first_enrolment": first, "amendments": changes}


def consort_flow(connection, study_id: str) -> dict:
    """CONSORT-style counts: who opened a link, who consented or declined, allocation and outcome per arm.

    ``enrolled`` counts every participant record, including people who opened a link and left
    before answering the consent screen (``opened_not_consented``): they are counted apart and
    are not participants; ``consented`` is the number who agreed. ``erased`` counts the erasures
    on request (`xai_lab.study.erasure`), overall and per arm; an erased participant is also counted
    as withdrawn (their participation ended there).
    """
    rows = connection.execute(select(participants.c.participant_id, participants.c.status, participants.c.arm,
                                     participants.c.step_key).where(participants.c.study_id == study_id)).all()
    erased = set(connection.execute(select(events.c.participant_id).where(events.c.study_id == study_id,
                                                                          events.c.kind == "erased")).scalars())
    by_arm: dict[str, dict[str, int]] = {}
    for participant_id, status, arm, _ in rows:
        if arm is not None:
            counts = by_arm.setdefault(arm, {"allocated": 0, "completed": 0, "withdrawn": 0, "in_progress": 0,
                                             "erased": 0})
            counts["allocated"] += 1
            counts[status] = counts.get(status, 0) + 1
            counts["erased"] += participant_id in erased
    rows = [row[1:] for row in rows]
    opened = sum(_not_consented(status, step) for status, _, step in rows)
    declined = sum(status == "declined" for status, _, _ in rows)
    return {"enrolled": len(rows), "opened_not_consented": opened, "declined_consent": declined,
            "consented": len(rows) - opened - declined,
            "not_yet_allocated": sum(a is None and s == "in_progress" and not _not_consented(s, k) for s, a, k in rows),
            "erased": len(erased), "by_arm": by_arm}


def _not_consented(status: str, step_key: str) -> bool:
    return status == "in_progress" and step_key == "consent"


def codebook(study_id: str, question: str = "confidence", positive: str = "",
             design: StudyDesign | None = None) -> str:
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
             "`consent_versions.json` holds every version of the consent text, by version (participants."
             "consent_version names the one each participant last agreed to).",
             "`design_history.json` gives when the first participant enrolled and every amendment registered "
             "since (consent text or [analysis]: what changed, when); `xai-lab analyze` reports an [analysis] "
             "changed after enrolment as a deviation.",
             "`flow.json` holds CONSORT counts: `enrolled` (every opened link), `opened_not_consented` (left before "
             "answering the consent screen: not participants), `declined_consent`, `consented`, `not_yet_allocated` "
             "(consented, profile not yet given), `erased` (erased on a researcher's `xai-lab erase`, after a "
             "request; also counted as withdrawn) and allocation and outcome per arm. `participants` lists only "
             "people who consented.",
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
    if design is not None and design.factors:
        lines += ["## factors", "", "Each trial's level of every factor is in `trials.factor_<name>` (and, together, "
                  "in `trials.conditions` as JSON). The design's factors:", "",
                  "| column | sets | varies | levels |", "|---|---|---|---|"]
        lines += [f"| `factor_{f.name}` | {f.sets} | {f.vary}{' (' + f.schedule + ')' if f.vary == 'within' else ''} "
                  f"| {', '.join(f.levels)} |" for f in design.factors]
        lines.append("")
    return "\n".join(lines)
