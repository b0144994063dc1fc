"""A model card with only the fields a test is about (the rest filled with neutral values)."""

from __future__ import annotations

from xai_lab.model.card import CardDataset, Decision, ModelCard, Preprocessing


def a_model_card(name: str = "m", weights_sha256: str | None = "ab" * 32, dataset: str = "nowhere",
                 val_auroc: float | None = None, val_auroc_ci: tuple[float, float] | None = None,
                 content_sha256: str = "", class_names: tuple[str, ...] = ("normal", "lesion"),
                 input_size: int = 32) -> ModelCard:
    val = {} if val_auroc is None else {"auroc": val_auroc, "auroc_ci": list(val_auroc_ci) if val_auroc_ci else None}
    return ModelCard(name=name, dataset=CardDataset(dataset, content_sha256, list(class_names), 1),
                     architecture={}, preprocessing=Preprocessing(input_size, [0.5], [0.25]),
                     decision=Decision("youden", 0.5), metrics={"val": val}, weights_sha256=weights_sha256)
