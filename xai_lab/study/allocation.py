"""Concealed, stratified allocation by permuted blocks of random size.

The sequence for each stratum is a chain of blocks; each block has a size drawn from the
design's `block_sizes` and holds every arm (or arm order, for within designs) equally often,
in random order. Random block sizes keep the next assignment unpredictable to staff even at
the end of a block (Schulz & Grimes, Lancet 2002). The generator is keyed by a secret made
when the study is registered and stored only in the database, so the sequence cannot be
worked out from the design file or the code; given the secret it can be regenerated for an
audit (`block`).

Allocation happens when a participant submits their profile (after consent), not at
enrolment or session creation, so people who leave before then never take a slot. A slot
held by someone who withdraws goes back to the stratum and is given to the next person
allocated there (see `xai_lab.store.repository.allocate`), so arm counts of participants
still in the study stay within half a block, like Gorilla's balanced randomiser.
"""

from __future__ import annotations

import hashlib
import random

from xai_lab.study.design import StudyDesign


def stratum_of(design: StudyDesign, profile: dict[str, str]) -> str:
    """'role=nurse;specialty=radiology' for the design's strata ('all' without strata)."""
    if not design.allocation.strata:
        return "all"
    return ";".join(f"{name}={profile[name]}" for name in design.allocation.strata)


def block(secret: str, study_id: str, stratum: str, index: int, design: StudyDesign) -> list[str]:
    """The `index`-th block of a stratum's sequence: a permutation of arms, of a random allowed size."""
    seed = hashlib.sha256(f"{secret}|{study_id}|{stratum}|{index}".encode()).digest()
    rng = random.Random(seed)
    size = rng.choice(design.allocation.block_sizes)
    units = list(design.orders)
    members = units * (size // len(units))
    rng.shuffle(members)
    return members
