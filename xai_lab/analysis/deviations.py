"""Did the analysis follow the preregistration? Every deviation, in one sentence each.

Compared: the preregistered design and estimand (`Lock`) against the design the study ran under
(the export's design.json); the amendments recorded while it ran (design_history.json: an [analysis]
changed after the first participant enrolled is a deviation even without a lock); and the exclusions
this run of `analyze` applied against the declared ones. A changed consent text is an ethics
amendment, not an analysis deviation: it is noted, not flagged.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from xai_lab.analysis.preregistration import Lock
from xai_lab.errors import XaiLabError
from xai_lab.study.design import StudyDesign, without_amendable
from xai_lab.version import __version__


@dataclass
class PreregistrationCheck:
    lock: str | None  # the preregistration's lock, None when analyze was given none
    deviations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def followed(self) -> bool:
        return self.lock is not None and not self.deviations


def check_preregistration(lock: Lock | None, design: dict[str, Any] | None, history: dict[str, Any] | None,
                          rehearsal: bool) -> PreregistrationCheck:
    check = PreregistrationCheck(lock.lock if lock is not None else None)
    if lock is not None:
        registered = _registered(design)
        if registered is None:
            check.deviations.append("the export has no readable design.json, so the design it ran under cannot be "
                                    "compared with the preregistration; export the study again with `xai-lab export`")
        else:
            _against_lock(check, lock, registered)
    _amendments(check, history or {})
    if rehearsal:
        check.deviations.append("exclusions not declared: simulated and pilot participants are included "
                                "(--rehearsal), while the preregistration leaves them out")
    if lock is None:
        check.notes.append("no preregistration was given (`xai-lab analyze --preregistration DIR`): the analysis is "
                           "checked only against the amendments recorded while the study ran")
    return check


def _registered(design: dict[str, Any] | None) -> StudyDesign | None:
    try:
        return StudyDesign.from_json(design) if design else None
    except (KeyError, TypeError, ValueError, XaiLabError):  # a hand-made or truncated design.json
        return None


def _against_lock(check: PreregistrationCheck, lock: Lock, registered: StudyDesign) -> None:
    preregistered = StudyDesign.from_json(lock.design)
    if without_amendable(preregistered).fingerprint() != without_amendable(registered).fingerprint():
        changed = _changed_sections(preregistered.to_json(), registered.to_json())
        check.deviations.append(f"design changed after preregistration: the study ran under a design that differs "
                                f"in {', '.join(changed) or 'its details'}")
    now = json.loads(json.dumps(asdict(registered.analysis)))  # as the lock's JSON holds it (lists, not tuples)
    if now != lock.analysis:
        check.deviations.append("estimand changed after preregistration: " + _field_changes(lock.analysis, now))
    if preregistered.consent_text != registered.consent_text:
        check.notes.append("the consent text was amended after preregistration (an ethics amendment; participants "
                           "agreed to the new version, see consent_versions.json)")
    if lock.lab_version != _lab_version():
        check.notes.append(f"preregistered with xai-lab {lock.lab_version}, analysed with {_lab_version()}")


def _amendments(check: PreregistrationCheck, history: dict[str, Any]) -> None:
    first = history.get("first_enrolment")
    for change in history.get("amendments", []):
        if "analysis" in change.get("changed", []) and first and change["at"] > first:
            check.deviations.append(f"[analysis] changed at {change['at']}, after the first participant enrolled "
                                    f"({first}): {_field_changes(change['analysis_from'], change['analysis_to'])}")


def _changed_sections(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    ignored = {"consent_text", "analysis", "source", "schema"}
    return sorted(key for key in set(before) | set(after) if key not in ignored and before.get(key) != after.get(key))


def _field_changes(before: dict[str, Any], after: dict[str, Any]) -> str:
    return "; ".join(f"{key}: {_shown(before.get(key))} -> {_shown(after.get(key))}"
                     for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key))


def _shown(value: Any) -> str:
    if value in (None, "", [], ()):
        return "(none)"
    return " - ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def _lab_version() -> str:
    return __version__
