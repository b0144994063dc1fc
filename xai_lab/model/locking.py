"""One lock for using a model that server sessions share (the trainer page's cached models).

Explaining a model changes process-wide state for the duration of the call: Captum's hooks on
the model's modules, its train/eval mode, and the global torch and NumPy random generators that
SmoothGrad and GradientSHAP seed. A hook left on by one session's explanation also fires in
another session's plain prediction and captures that pass's activations, so predictions must
wait too: with four sessions on one model, 16 of 48 trainer renders failed. `attribute`, the
randomisation cascade, `ImageClassifier.predict_proba` and the familiarity check's features hold
this lock; `benchmarks/trainer_bench.py` measured it against a private model copy per session
(docs/explanations.md#concurrency). Re-entrant: an explanation may predict inside it.
"""

from __future__ import annotations

import threading

MODEL_LOCK = threading.RLock()
