"""Peer rating: a peer's record (or a vignette) and Likert items on their competence.

The targets are chosen when the first rating step is first shown (`before_show`), balanced by how
often each has been rated (`xai_lab.study.peer`), and kept on the participant, so a reload shows
the same peer.
"""

from __future__ import annotations

from typing import Any, TypedDict

from sqlalchemy import Connection

from xai_lab.store.schema import ratings
from xai_lab.study.flow import StepKey, check_scores
from xai_lab.study.peer import choose_targets
from xai_lab.study.steps.base import Event, StepContext, StepKind

RATING_SD = 1.2  # spread of a simulated rater's answers around the arm's mean, in scale points


class RatingContent(TypedDict):
    target: str  # what the rater reads: a vignette, or a peer's record in words
    target_kind: str  # vignette | peer_record
    items: list[dict[str, Any]]  # the design's Likert items (id, text, scale_min, scale_max, anchors)


class Rating(StepKind):
    kind = "rating"
    key_fields = ("index",)

    def content(self, context: StepContext, row: Any, key: StepKey) -> RatingContent:
        target = row["rating_targets"][key.index]
        return {"target": target["display"], "target_kind": target["kind"],
                "items": [vars(item) for item in context.design.peer_rating.items]}

    def before_show(self, context: StepContext, connection: Connection, row: Any) -> Event | None:
        if row["step_key"] != "rating:0" or row["rating_targets"]:
            return None
        return "rating_targets", {"targets": choose_targets(connection, context.design, context.case_set, row)}

    def check(self, context: StepContext, row: Any, key: StepKey, answer: dict[str, Any], rt_ms: int,
              answered_at: str) -> dict[str, Any]:
        target = row["rating_targets"][key.index]
        items = context.design.peer_rating.items
        scores = check_scores(answer, items)
        by_id = {item.id: item for item in items}
        return {"ratings": [
            {"study_id": context.design.id, "rater_id": row["participant_id"], "target_kind": target["kind"],
             "target_id": target["id"], "target_arm": target["arm"], "item": item, "score": score,
             "scale_min": by_id[item].scale_min, "scale_max": by_id[item].scale_max, "rated_at": answered_at,
             "target_source": target["source"]} for item, score in scores.items()]}

    def apply(self, connection: Connection, event: dict[str, Any], pending: dict[str, Any]) -> dict[str, Any]:
        rows = event["payload"].get("ratings")
        if rows:
            connection.execute(ratings.insert(), rows)
        return {}

    def simulated_answer(self, reader, rng, content) -> dict[str, Any]:
        target = content["target"]
        arm = reader.arm_of_text.get(target.get("text") or target.get("use_of_ai"), "verify")
        mean = reader.rating_means[arm]
        return {item["id"]: int(min(item["scale_max"], max(item["scale_min"], round(rng.gauss(mean, RATING_SD)))))
                for item in content["items"]}
