"""`xai-lab preregister`: a study design turned into a preregistration and a lock.

The document follows the sections of the OSF Preregistration template (Study information, Design
plan, Sampling plan, Variables, Analysis plan, Other), filled from what the design already declares:
the hypotheses are its estimands (`[analysis]`), the sample size comes from `power` (its simulation
settings written beside the table), and the software versions are the ones installed. Markdown for
OSF's text boxes and an HTML copy (Jinja2, autoescaped) for the ethics file.

The **lock** is a SHA-256 over the design's fingerprint, its `[analysis]` section and the lab's
version. `analyze --preregistration DIR` prints it and compares the registered design against it
(`xai_lab.analysis.deviations`), so the report shows whether the analysis followed the plan.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape

from xai_lab.analysis.comparison import ordered_arms
from xai_lab.analysis.estimands import Declared, declared_in
from xai_lab.analysis.report_text import PLAIN
from xai_lab.errors import ConfigError
from xai_lab.private_files import write_private_text
from xai_lab.store.schema import column_meanings, trials
from xai_lab.study.design import StudyDesign
from xai_lab.version import __version__

TEMPLATES = Path(__file__).parent / "templates"
_HTML = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]),
                    trim_blocks=True, lstrip_blocks=True)
_MARKDOWN = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=False, trim_blocks=True, lstrip_blocks=True)
LOCK_FILE = "lock.json"
SOFTWARE = ("xai-lab", "numpy", "pandas", "scipy", "statsmodels", "scikit-learn", "torch", "captum", "streamlit")
# What the analysis leaves out unless told otherwise (`analyze --rehearsal`), declared in the document.
DECLARED_EXCLUSIONS = ("simulated participants (enrolled_via = simulation)", "pilot participants (pilot = true)")
MEASURED = ("final_label", "final_confidence", "final_score", "initial_label", "initial_confidence", "rt_final_ms",
            "rt_initial_ms", "ai_label", "ai_correct", "overlay_toggles")


@dataclass(frozen=True)
class Lock:
    """What the analysis is checked against: the hash and what it was made of."""

    lock: str
    fingerprint: str
    analysis: dict[str, Any]
    lab_version: str
    design: dict[str, Any]  # the whole design, so a deviation can say what changed
    written_at: str
    exclusions: tuple[str, ...] = DECLARED_EXCLUSIONS

    @classmethod
    def of(cls, design: StudyDesign) -> Lock:
        analysis = asdict(design.analysis)
        return cls(lock=lock_hash(design.fingerprint(), analysis, __version__), fingerprint=design.fingerprint(),
                   analysis=analysis, lab_version=__version__, design=design.to_json(),
                   written_at=datetime.now(UTC).isoformat(timespec="seconds"))

    @classmethod
    def read(cls, path: Path) -> Lock:
        """The lock in `path` (a lock.json, or the folder `preregister` wrote); one-line errors."""
        path = path / LOCK_FILE if path.is_dir() else path
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            lock = cls(**{**raw, "exclusions": tuple(raw.get("exclusions", DECLARED_EXCLUSIONS))})
        except FileNotFoundError:
            raise ConfigError(f"no preregistration lock at {path}; give the folder `xai-lab preregister --out` "
                              "wrote, or its lock.json") from None
        except (OSError, ValueError, TypeError) as error:
            raise ConfigError(f"{path} is not a preregistration lock ({error}); write it again with "
                              "`xai-lab preregister`") from None
        if lock_hash(lock.fingerprint, lock.analysis, lock.lab_version) != lock.lock:
            raise ConfigError(f"{path}: the lock does not match what it says it locks (edited by hand?); the "
                              "preregistered document holds the original lock")
        return lock


def lock_hash(fingerprint: str, analysis: dict[str, Any], lab_version: str) -> str:
    text = json.dumps({"fingerprint": fingerprint, "analysis": analysis, "lab_version": lab_version}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class SampleSize:
    """The sample size and how it was found: a power table from `power_table`, with its settings."""

    table: pd.DataFrame
    settings: dict[str, Any]
    target_power: float
    contrast: str  # the table's row of the primary estimand
    chosen: int | None = None  # the smallest size per arm reaching the target, None if none did


def choose_size(table: pd.DataFrame, settings: dict[str, Any], target_power: float) -> SampleSize:
    """The smallest simulated size whose primary test (`power_table`'s "primary: ..." row) reaches the target."""
    rows = table[table["contrast"].astype(str).str.startswith("primary:")]
    reached = rows[rows["power"] >= target_power]
    chosen = int(reached["per_arm"].min()) if len(reached) else None
    contrast = str(rows["contrast"].iloc[0]).removeprefix("primary: ") if len(rows) else "the primary estimand"
    return SampleSize(table, settings, target_power, contrast, chosen)


@dataclass
class Document:
    title: str
    sections: list[tuple[str, list[tuple[str, list[str]]]]] = field(default_factory=list)  # (section, [(q, lines)])
    power: pd.DataFrame | None = None


def build_document(design: StudyDesign, lock: Lock, size: SampleSize | None, authors: list[str]) -> Document:
    declared = declared_in(design.to_json(), ordered_arms(design.arms))
    document = Document(title=f"Preregistration: {design.title}", power=size.table if size is not None else None)
    document.sections = [
        ("Study information", _information(design, declared, authors)),
        ("Design plan", _design_plan(design)),
        ("Sampling plan", _sampling(design, size)),
        ("Variables", _variables(design, declared)),
        ("Analysis plan", _analysis_plan(design, declared)),
        ("Other", _other(lock)),
    ]
    return document


def _information(design: StudyDesign, declared: Declared, authors: list[str]) -> list[tuple[str, list[str]]]:
    arms = ", ".join(design.arms)
    description = (f"A randomised experiment on how clinicians use AI advice with saliency explanations. Participants "
                   f"read {design.cases.n} images ({design.cases.ai_wrong_share:.0%} with wrong AI advice) under the "
                   f"conditions {arms}.")
    return [("Title", [design.title]),
            ("Authors", authors or ["Not given: add them with `--author NAME` (repeatable), or on the OSF form."]),
            ("Description", [description]),
            ("Hypotheses", _hypotheses(declared))]


def _hypotheses(declared: Declared) -> list[str]:
    metric = PLAIN.get(declared.primary, declared.primary.replace("_", " "))
    if declared.interaction:
        first, second = declared.interaction
        lines = [f"H1 (primary): the effect of {first} on {metric} differs between the levels of {second} (the "
                 f"{first} x {second} interaction, risk-difference scale, two-sided)."]
    else:
        of = f" of factor {declared.factor}" if declared.factor else ""
        lines = [f"H1 (primary): {metric} differs between {declared.a} and {declared.b}{of} (risk difference "
                 f"{declared.a} - {declared.b}, two-sided)."]
    if declared.effect is not None:
        lines.append(f"The study is sized to detect a risk difference of {declared.effect:g}.")
    if not declared.declared:
        lines.append("The design declares no [analysis] section: this is the lab's default estimand for these arms.")
    for number, name in enumerate(declared.secondary, start=2):
        lines.append(f"H{number} (secondary): {PLAIN.get(name, name.replace('_', ' '))} differs between "
                     f"{declared.a} and {declared.b} (Holm-adjusted over the secondary family).")
    return lines


def _design_plan(design: StudyDesign) -> list[tuple[str, list[str]]]:
    allocation = design.allocation
    if design.factors:
        conditions = [f"Factor {f.name} ({f.sets}, varied {f.vary}): {', '.join(f.levels)}." for f in design.factors]
    else:
        conditions = [f"Arms: {', '.join(design.arms)} ({allocation.kind} participants)."]
    randomisation = (f"Permuted blocks of {', '.join(map(str, allocation.block_sizes)) or 'the default size'}"
                     f"{', stratified by ' + ', '.join(allocation.strata) if allocation.strata else ''}; the sequence "
                     "is drawn from a secret seed kept in the study database, so it is concealed from recruiters and "
                     "participants until each allocation.")
    return [("Study type", ["Experiment: participants are randomly assigned to conditions."]),
            ("Blinding", ["Participants are not told which condition they are in or what the others are. Analysts "
                          "work on pseudonymous participant ids; the allocation sequence is concealed."]),
            ("Study design", conditions + [
                f"{design.cases.n} main trials per participant after {design.cases.practice} practice trial(s); "
                f"{design.attention.count} attention check(s).",
                f"Advice: {design.cases.advice} ({design.cases.ai_wrong_share:.0%} of main cases carry wrong advice); "
                f"explanation method: {design.explanation.method}."]),
            ("Randomization", [randomisation])]


def _sampling(design: StudyDesign, size: SampleSize | None) -> list[tuple[str, list[str]]]:
    cap = design.enrolment.max_enrolments
    if size is None:
        rationale = ["No power simulation was run (`--no-power`): state the sample size and its rationale here."]
    else:
        s = size.settings
        found = (f"{size.chosen} participants per arm" if size.chosen is not None else
                 f"none of the sizes simulated ({', '.join(map(str, s['sizes']))} per arm)")
        rationale = [f"Power by simulation (`xai-lab power`): {s['reps']} simulated studies per size, alpha "
                     f"{s['alpha']}, seed {s['seed']}, planted effects {s['effects'] or 'the defaults'}. The primary "
                     f"estimand ({size.contrast}) reaches {size.target_power:.0%} power at {found}. The table below "
                     "gives every size and contrast with its Monte Carlo standard error."]
    return [("Existing data", ["Registration prior to creation of data: the lock below is made from the design "
                               "before enrolment, and the analysis flags any change after the first participant."]),
            ("Data collection procedures", ["Participants take part in a browser through the xai-lab study server; "
                                            "every answer, confidence rating and server-measured response time is "
                                            "logged as it is given."]),
            ("Sample size", [f"{size.chosen} participants per arm." if size is not None and size.chosen is not None
                             else "See the rationale."]),
            ("Sample size rationale", rationale),
            ("Stopping rule", [f"Enrolment through the shared link closes at {cap} participants." if cap else
                               "Enrolment stops when the sample size above is reached in every arm."])]


def _variables(design: StudyDesign, declared: Declared) -> list[tuple[str, list[str]]]:
    meanings = column_meanings(trials)
    manipulated = ([f"{f.name}: {', '.join(f.levels)}" for f in design.factors] or
                   [f"Condition (arm): {', '.join(design.arms)}"])
    measured = [f"`{name}`: {meanings[name]}" for name in MEASURED]
    indices = [f"{declared.primary}: {PLAIN.get(declared.primary, declared.primary)}, per participant and arm, from "
               "the trial records (`xai-lab analyze`)."]
    return [("Manipulated variables", manipulated), ("Measured variables", measured), ("Indices", indices)]


def _analysis_plan(design: StudyDesign, declared: Declared) -> list[tuple[str, list[str]]]:
    if design.factors:
        model = ("The factorial analysis: the declared contrast or interaction on the risk-difference scale, with "
                 "participants and cases as crossed random effects.")
    elif design.allocation.kind == "within":
        model = "The crossover analysis: the period-adjusted paired difference, participants and cases random."
    else:
        model = ("The risk difference between arms with a crossed participants x cases variance (cases shared "
                 "across arms), and a generalised (Behrens-Fisher) t-test.")
    return [("Statistical models", [model]),
            ("Transformations", ["None: rates are shares of trials; scores are the 0-100 readings as recorded."]),
            ("Inference criteria", ["Two-sided tests at alpha 0.05; 95% confidence intervals; the secondary family "
                                    "is Holm-adjusted."]),
            ("Data exclusion", [f"Left out of the analysis: {', '.join(DECLARED_EXCLUSIONS)}. Sensitivity analyses "
                                "of the primary estimand: completers only, and participants who passed every "
                                "attention check."]),
            ("Missing data", ["Available-case analysis: every answered main trial counts; participants who withdrew "
                              f"under a `{design.withdrawal}` policy are handled as the consent text said."]),
            ("Exploratory analysis", ["Per-arm accuracy, calibration, AI alone vs readers (MRMC), and peer-rated "
                                      "competence are reported as secondary and descriptive."])]


def _other(lock: Lock) -> list[tuple[str, list[str]]]:
    versions = [f"Python {platform.python_version()}"] + [f"{name} {_version(name)}" for name in SOFTWARE]
    return [("Software", [", ".join(versions) + "."]),
            ("Lock", [f"`{lock.lock}`: SHA-256 of the design fingerprint `{lock.fingerprint}`, its [analysis] "
                      f"section and xai-lab {lock.lab_version}. `xai-lab analyze --preregistration` checks the "
                      "analysis against it and lists every deviation in the report."])]


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def write_preregistration(document: Document, lock: Lock, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    power = None if document.power is None else {
        "columns": list(document.power.columns),
        "rows": [[_cell(v) for v in row] for row in document.power.itertuples(index=False)]}
    context = {"document": document, "lock": lock, "power": power}
    paths = {"markdown": out / "preregistration.md", "html": out / "preregistration.html", "lock": out / LOCK_FILE}
    write_private_text(paths["markdown"], _MARKDOWN.get_template("preregistration.md.j2").render(**context))
    write_private_text(paths["html"], _HTML.get_template("preregistration.html.j2").render(**context))
    write_private_text(paths["lock"], json.dumps(asdict(lock), indent=2) + "\n")
    return paths


def _cell(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)
