"""Write `tests/data/release_lab.tar.gz`: a small lab as a released version left it, with participants
mid-study, so `tests/test_upgrade.py` can check an upgrade serves them on where they were.

Run once per release whose database an upgrade must keep serving, *with that release installed*:

    python tests/data/make_release_lab.py tests/data/release_lab.tar.gz

The committed archive was made at commit c134d95 (the release before the seams issue) on 2026-12-04.
It holds the dataset, the model, the explanation cache, the prepared case sets, the design files and
the SQLite database; `manifest.json` names each participant's token and the step it was left at.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

# How far each participant got (answered steps): 0 = left on consent; the largest finish the study.
PROGRESS = {"t": [0, 1, 3, 5, 6, 9, 14, 99], "w": [2, 4, 7, 11, 99]}


def _cli(home: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "xai_lab.cli", *args], check=True, cwd=home,
                   env={**os.environ, "XAI_LAB_HOME": str(home)}, stdout=subprocess.DEVNULL)


def main(out: Path) -> None:
    from conftest import write_study  # tests/conftest.py: the engine tests' design text

    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        os.environ["XAI_LAB_HOME"] = str(home)
        _cli(home, "data", "synth", "--name", "tiny", "--n", "160", "--size", "32", "--seed", "3",
             "--shortcut", "1.0")
        _cli(home, "train", "--data", "tiny", "--epochs", "4", "--members", "1", "--batch-size", "64", "--quiet")
        designs = {"t": write_study(home, "t"),
                   "w": write_study(home, "w", arms='["verify", "rely"]', kind="within", blocks="[2]", n=6)}
        for path in designs.values():
            _cli(home, "study", "prepare", str(path))

        from xai_lab.study.design_file import load_design
        from xai_lab.study.prepare import load_case_set
        from xai_lab.study.service import StudyService
        from xai_lab.study.simulate import SimulatedClinician, SimulationConfig

        manifest = {"commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True,
                                             text=True).stdout.strip(), "studies": {}}
        for study_id, path in designs.items():
            design = load_design(path)
            service = StudyService.open(design, load_case_set(design))
            left = []
            for number, answered in enumerate(PROGRESS[study_id]):
                token = service.enrol(via="invite")
                clinician = SimulatedClinician(SimulationConfig(participants=1, seed=5), number, service)
                step = service.resume(token)
                for _ in range(answered):
                    if step.status != "in_progress":
                        break
                    step = service.submit(token, step.key, clinician.answer(step), idempotency_key=str(uuid.uuid4()))
                left.append({"number": number, "token": token, "step_key": step.key, "status": step.status,
                             "done": step.done, "total": step.total})
            manifest["studies"][study_id] = {"design_file": path.name, "fingerprint": design.fingerprint(),
                                             "participants": left}
            service.engine.dispose()
        (home / "manifest.json").write_text(json.dumps(manifest, indent=1))
        with tarfile.open(out, "w:gz") as archive:
            for item in sorted(home.iterdir()):
                if item.name not in ("simulations",):
                    archive.add(item, arcname=item.name)


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
