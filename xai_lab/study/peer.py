"""Choosing what a participant rates in the peer-rating stage.

Two kinds of target share one vocabulary (`target_arm` = verify | rely | control):
- `vignette`: a short text about a clinician who used no AI, used AI as the primary
  decision-maker, or used AI to verify (Yang, Dai et al. 2025);
- `peer_record`: one anonymised trial of another participant (image, AI advice, the peer's
  initial and final decisions and how their arm used the AI).

Records are balanced: each rater gets the records assigned least often so far (ties broken
at random, reproducibly per rater), from distinct peers where possible, never their own.
Before enough records exist the design's fallback applies: records of pilot participants
(`pilot`), or vignettes (`vignette`); `target_source` in the export says which was used.
"""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import Connection, select

from xai_lab.store.repository import rating_loads
from xai_lab.store.schema import participants, trials
from xai_lab.study.cases import CaseSet
from xai_lab.study.design import StudyDesign

USE_OF_AI = {
    "verify": "decided first without AI, then saw the AI's advice and decided again",
    "rely": "saw the AI's advice together with the image and decided",
    "control": "decided without AI",
    "on_demand": "could ask for the AI's advice while reading, and decided",  # whether they asked: the record
}


def choose_targets(connection: Connection, design: StudyDesign, case_set: CaseSet, rater) -> list[dict[str, Any]]:
    spec = design.peer_rating
    rng = random.Random(f"{design.seed}:rating:{rater['participant_id']}")
    loads = rating_loads(connection, design.id)
    if spec.kind == "peer_record":
        records = _records(connection, design.id, rater["participant_id"], pilot=False)
        source = "peer"
        if len({r["participant_id"] for r in records}) < spec.per_rater and spec.fallback == "pilot":
            records, source = _records(connection, design.id, rater["participant_id"], pilot=True), "pilot"
        if len(records) >= spec.per_rater:
            return [_record_target(r, source, spec.show_correctness)
                    for r in _least_loaded(records, spec.per_rater, loads, rng)]
        return _vignettes(design, rater, loads, rng, source="fallback_vignette")
    return _vignettes(design, rater, loads, rng, source="vignette")


def _records(connection: Connection, study_id: str, rater_id: str, pilot: bool) -> list[dict[str, Any]]:
    query = (select(trials).join(participants, participants.c.participant_id == trials.c.participant_id)
             .where(trials.c.study_id == study_id, trials.c.participant_id != rater_id,
                    participants.c.status != "withdrawn", participants.c.pilot.is_(pilot))
             .order_by(trials.c.record_id))
    return [dict(row) for row in connection.execute(query).mappings()]


def _least_loaded(records: list[dict[str, Any]], n: int, loads: dict[str, int], rng: random.Random) -> list[dict]:
    ranked = sorted(records, key=lambda r: (loads.get(r["record_id"], 0), rng.random()))
    chosen, peers = [], set()
    for record in ranked:  # distinct peers first
        if record["participant_id"] not in peers:
            chosen.append(record)
            peers.add(record["participant_id"])
        if len(chosen) == n:
            return chosen
    return chosen + [r for r in ranked if r not in chosen][:n - len(chosen)]


def _record_target(record: dict[str, Any], source: str, show_correctness: bool) -> dict[str, Any]:
    display = {
        "case_id": record["case_id"], "use_of_ai": USE_OF_AI[record["arm"]],
        "ai_label": record["ai_label"], "ai_confidence": record["ai_confidence"],
        "initial_label": record["initial_label"], "initial_confidence": record["initial_confidence"],
        "final_label": record["final_label"], "final_confidence": record["final_confidence"],
    }
    if show_correctness:
        display.update(true_label=record["true_label"], final_correct=record["final_correct"])
    return {"kind": "peer_record", "id": record["record_id"], "arm": record["arm"], "source": source,
            "display": display}


def _vignettes(design: StudyDesign, rater, loads: dict[str, int], rng: random.Random,
               source: str) -> list[dict[str, Any]]:
    spec = design.peer_rating
    pool = list(spec.vignettes)
    if source == "fallback_vignette":
        # a fallback stands in for peers' records, which exist only for the design's arms: a "control"
        # vignette in a verify-vs-rely study would add a group the design does not have
        # unless that leaves fewer than per_rater: a rater rating one vignette twice broke the ratings' one
        # rating per item and target (a one-arm study with one vignette of its arm crashed at rating:1)
        narrowed = [v for v in pool if v.target_arm in design.arms]
        pool = narrowed if len(narrowed) >= min(spec.per_rater, len(pool)) else pool
    if spec.assignment == "by_arm":
        pool = [v for v in pool if v.target_arm == rater["arm"]]
    ranked = sorted(pool, key=lambda v: (loads.get(v.id, 0), rng.random()))
    chosen = [ranked[i % len(ranked)] for i in range(spec.per_rater if spec.assignment != "by_arm" else 1)]
    return [{"kind": "vignette", "id": v.id, "arm": v.target_arm, "source": source, "display": {"text": v.text}}
            for v in chosen]
