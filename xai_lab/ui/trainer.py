"""Trainer page: what saliency maps do and don't tell you, live. No login; nothing is recorded.

Pick a case from any dataset in the lab (synthetic with lesion outlines, or imported real
images) or upload an image; see the model's calibrated prediction; compare methods side by
side with adjustable opacity and clipping; run the randomisation check (Adebayo et al. 2018)
on this image; and put a second model (e.g. one trained on a shortcut marker) beside the first.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from xai_lab.data.records import ImageDataset
from xai_lab.data.storage import list_datasets, load_dataset
from xai_lab.data.upload_limits import MAX_UPLOAD_BYTES
from xai_lab.data.uploads import read_uploaded_image
from xai_lab.errors import XaiLabError
from xai_lab.explain.attribution import attribute, methods_for
from xai_lab.explain.live import CascadeStep, predict_image, randomisation_cascade
from xai_lab.explain.methods import METHODS
from xai_lab.explain.overlay import render_overlay
from xai_lab.explain.randomisation import cascade_blocks
from xai_lab.model.card import ModelCard
from xai_lab.model.familiarity import FAMILIARITY_FILE, FamiliarityCheck
from xai_lab.model.network import ImageClassifier
from xai_lab.model.quality import quality_verdict
from xai_lab.model.storage import list_models, load_model
from xai_lab.ui.wording import percent

DEFAULT_METHODS = ["gradcam", "saliency", "integrated_gradients"]
GUIDE_DATASET = "synthetic"  # the dataset docs/trainer-guide.md walks through


@st.cache_resource(show_spinner="Loading the dataset ...", max_entries=4)
def _dataset(name: str) -> ImageDataset:
    return load_dataset(name)


@st.cache_resource(show_spinner="Learning what the training images look like ...", max_entries=6)
def _familiarity(folder: str, dataset: str) -> FamiliarityCheck:
    """What the model's training images look like to it, for the upload check (read-only once made):
    saved beside the weights by `xai-lab train`, fitted here for models trained before that."""
    model = _model(folder)[0]
    saved = FamiliarityCheck.load(Path(folder) / FAMILIARITY_FILE, model)
    if saved is not None:
        return saved
    data = _dataset(dataset)
    return FamiliarityCheck.fit(model, data["train"].images, data["val"].images)


@st.cache_resource(show_spinner="Loading the model ...", max_entries=6)
def _model(folder: str) -> tuple[ImageClassifier, ModelCard]:
    return load_model(folder)


@st.cache_data(show_spinner=False, max_entries=128)
def _map(folder: str, pixels: np.ndarray, method: str) -> np.ndarray:
    """One model's map for one image (C, H, W) and method, explaining its own decision.

    Cached apart from the overlay's look, so moving the opacity or clipping slider redraws the
    overlays without recomputing attributions (seconds for occlusion or integrated gradients).
    """
    model, _ = _model(folder)
    image = torch.from_numpy(pixels)
    return attribute(model, image[None], predict_image(model, image).label, method)[0].numpy()


@st.cache_data(show_spinner=False, max_entries=256)
def _overlay_png(folder: str, pixels: np.ndarray, method: str, size: int, alpha: float, clip_percentile: float,
                 outline_mask: np.ndarray | None) -> bytes:
    """A map drawn with its look, as PNG bytes: a rerun that keeps the look (another session opening the
    page, a randomisation check, a second model) sends the same bytes instead of drawing and encoding
    each map again (about 0.1 s a map at 640 px)."""
    overlay = render_overlay(torch.from_numpy(pixels), _map(folder, pixels, method), display_size=size,
                             alpha=alpha, clip_percentile=clip_percentile, outline_mask=outline_mask)
    buffer = io.BytesIO()
    overlay.save(buffer, format="PNG")
    return buffer.getvalue()


def _guide_choice(names: list[str], preferred: str = GUIDE_DATASET) -> int:
    """Open on what docs/trainer-guide.md uses (`synthetic`, made by `xai-lab demo`), not the alphabetically
    first entry; a model named like its dataset is that dataset's default."""
    return names.index(preferred) if preferred in names else 0


def render() -> None:
    st.title("Trainer: what saliency maps show")
    st.caption("Teaching only: nothing on this page is recorded. Not for clinical use.")
    cards = list_datasets()
    if not cards:
        st.info("There are no datasets yet. Run `xai-lab demo` (or `xai-lab data synth --name synthetic`) and "
                "reload this page.")
        return
    # Controls on the left, maps on the right: the maps start near the top of a 1366 x 768 screen.
    controls, maps = st.columns([1, 3], gap="medium")
    with controls:
        chosen = _choose(cards)
    if chosen is None:
        return
    image, class_names = chosen.image, chosen.dataset.class_names
    with controls:
        model, _ = _model(chosen.folder)
        _prediction(model, image, class_names, chosen.truth, chosen.unfamiliar)
        _gate(chosen.card)
    with maps:
        # the maps' controls sit in one row right above the maps they change: at 1366 x 768 moving a
        # slider never scrolls the maps away
        methods, alpha, clip, outline = _view_controls(chosen.mask is not None, methods_for(model, list(METHODS))[0])
    look = {"alpha": alpha, "clip_percentile": clip, "outline_mask": chosen.mask if outline else None}
    with maps:
        if chosen.unfamiliar:
            st.warning("This image does not look like the images the model learned from. Its answer, and how sure "
                       "it says it is, mean little here: the confidence was calibrated only on images like its "
                       "training data.")
        _method_panels(chosen.folder, image, methods, look, class_names)
    st.divider()
    _randomisation(chosen.folder, model, image, methods)
    st.divider()
    _second_model(chosen.models, chosen.folder, image, methods, look, class_names)


@dataclass(frozen=True)
class Choice:
    """What the trainer picked in the controls column."""

    dataset: ImageDataset
    models: dict[str, str]  # shown name -> folder, of every model that takes these images
    folder: str  # the chosen model's
    image: torch.Tensor
    mask: np.ndarray | None  # the true lesion, synthetic test cases only
    truth: str | None  # None for uploads
    unfamiliar: bool  # an upload unlike the model's training images
    card: ModelCard  # the chosen model's card


def _choose(cards: list) -> Choice | None:
    """Dataset, model, case or upload, from the controls column."""
    names = [c.name for c in cards]
    card = {c.name: c for c in cards}[st.selectbox("Dataset", names, index=_guide_choice(names),
                                                   key="trainer:dataset")]
    models = _models_for(card.content_sha256, card.image_size[-1], card.class_names)
    if not models:
        st.info(f"There is no model for dataset '{card.name}' yet. Train one with `xai-lab train --data {card.name}`.")
        return None
    model_name = st.selectbox("Model", list(models), index=_guide_choice(list(models), card.name),
                              key="trainer:model")
    dataset = _dataset(card.name)
    index = int(st.number_input("Test case", 0, len(dataset["test"]) - 1, _first_lesion(dataset),
                                key="trainer:case"))
    with st.expander("... or your own image"):  # one line until opened: the controls fit a 768-px screen
        upload = st.file_uploader("Your own image (PNG or JPEG)", type=["png", "jpg", "jpeg"],
                                  max_upload_size=MAX_UPLOAD_BYTES // (1024 * 1024))
    model, card_of_model = _model(models[model_name])
    image, mask, truth = _chosen_image(dataset, index, upload, model)
    if image is None:
        return None
    unfamiliar = upload is not None and _familiarity(models[model_name], card.name).is_unfamiliar(image)
    return Choice(dataset, models, models[model_name], image, mask, truth, unfamiliar, card_of_model)


def _first_lesion(dataset: ImageDataset) -> int:
    """Start on a case with a marked lesion (synthetic data), where maps can be checked against truth."""
    masks = dataset["test"].masks
    if masks is None:
        return 0
    marked = masks.flatten(1).any(dim=1).nonzero()
    return int(marked[0]) if len(marked) else 0


def _models_for(dataset_sha256: str, size: int, class_names: list[str]) -> dict[str, str]:
    """Models trained on this dataset first, then other models answering with the same classes (a
    shortcut model beside the synthetic one: the second model a trainer compares), then any other
    model taking images of the same size (e.g. a chest X-ray model)."""
    own, same_classes, other = {}, {}, {}
    for folder, card in list_models():
        trained_on = card.dataset
        if trained_on.content_sha256 == dataset_sha256:
            own[folder.name] = str(folder)
        elif card.preprocessing.input_size == size:
            group = same_classes if list(trained_on.class_names) == list(class_names) else other
            group[f"{folder.name} (trained on {trained_on.name})"] = str(folder)
    return {**own, **same_classes, **other}


def _chosen_image(dataset: ImageDataset, index: int, upload, model: ImageClassifier):
    if upload is not None:
        try:
            channels = model.spec.in_channels
            return read_uploaded_image(upload.getvalue(), dataset.card.image_size[-1], channels), None, None
        except XaiLabError as error:
            st.error(str(error))
            return None, None, None
    split = dataset["test"]
    mask = split.masks[index].numpy() if split.masks is not None and bool(split.masks[index].any()) else None
    return split.images[index], mask, dataset.class_names[int(split.labels[index])]


def _prediction(model: ImageClassifier, image: torch.Tensor, class_names: list[str], truth: str | None,
                unfamiliar: bool) -> None:
    prediction = predict_image(model, image)
    # an unfamiliar image gets no percentage: a calibrated number is only calibrated on familiar images
    said = class_names[prediction.label] + ("" if unfamiliar else f" ({percent(prediction.confidence)})")
    st.markdown(f"**Model says:** {said}  \n**Truth:** {truth or 'unknown'}")
    st.caption("Not meaningful for this image: see the warning." if unfamiliar else
               "The percentage is calibrated on validation images like these (temperature scaling).")


def _view_controls(has_mask: bool, available: list[str]) -> tuple[list[str], float, float, bool]:
    """available: the methods this model can run (a TorchScript model has no Grad-CAM, `methods_for`)."""
    choice, opacity, clipping, outline = st.columns([3.0, 1.6, 1.6, 1.4], vertical_alignment="bottom")
    methods = choice.multiselect("Saliency methods", available, default=[m for m in DEFAULT_METHODS if m in available],
                                 max_selections=4, format_func=_title)
    alpha = opacity.slider("Overlay opacity", 0.1, 1.0, 0.6, 0.05)
    clip = clipping.slider("Clip at percentile", 90.0, 100.0, 99.0, 0.5,
                           help="Values above this percentile of the map get the top colour.")
    # no help icon: the caption under the maps says what the amber line is, and the label keeps its room
    shown = outline.checkbox("Lesion outline", value=has_mask, disabled=not has_mask)
    return methods, alpha, clip, shown


def _gate(card: ModelCard) -> None:
    """The quality gate's verdict (the dataset's floor): the same rule that keeps a model out of studies."""
    verdict = quality_verdict(card)
    if verdict.passed:
        st.caption(f"Quality gate passed: validation AUROC {verdict.val_auroc:.2f} "
                   f"[{verdict.val_auroc_ci[0]:.2f}, {verdict.val_auroc_ci[1]:.2f}], floor {verdict.floor:.2f}.")
    else:
        st.warning(f"This model fails the quality gate, so no study would serve it: {verdict.sentence}.")


MAPS_ROW_PX = 960  # the widest the row of maps gets beside the controls


def _title(method: str) -> str:
    return METHODS[method].title


def map_columns(n_methods: int) -> int:
    """Columns for a row of maps: at least two, so a single map is never taller than a 768-px screen."""
    return max(n_methods, 2)


def render_size(n_methods: int) -> int:
    """Pixels each map is drawn at: twice its widest display width, so the browser only ever
    shrinks it (sharp text on the colour bar at any number of methods, on any screen density)."""
    return 2 * MAPS_ROW_PX // map_columns(n_methods)


def _method_panels(folder: str, image: torch.Tensor, methods: list[str], look: dict, class_names: list[str]) -> None:
    if not methods:
        st.caption("Choose at least one method.")
        return
    size = render_size(len(methods))
    for column, method in zip(st.columns(map_columns(len(methods))), methods, strict=False):  # spare column: empty
        with column, st.spinner(f"{METHODS[method].title} ..."):
            overlay = _overlay_png(folder, image.numpy(), method, size, **look)
        column.image(overlay, caption=METHODS[method].title, width="stretch")
    st.caption(f"Each map explains the model's answer ({' or '.join(class_names)}). Yellow = most influence on "
               "the answer, dark purple = little. Amber line = the true lesion.")


@st.cache_data(show_spinner=False, max_entries=32)
def _cascade(folder: str, pixels: np.ndarray, method: str) -> tuple[list[CascadeStep], bool]:
    """One image's randomisation cascade, kept: a second trainer (or a second press) sees it at once."""
    return randomisation_cascade(_model(folder)[0], torch.from_numpy(pixels), method)


def _randomisation(folder: str, model: ImageClassifier, image: torch.Tensor, methods: list[str]) -> None:
    st.subheader("Sanity check: randomise the model")
    st.caption("If a map barely changes when the model's learned weights are replaced by random ones, it is "
               "showing the image, not what the model learned.")
    row = st.columns([2, 1], vertical_alignment="bottom")
    # every method can be checked, not only the ones shown above (the guide checks Guided Grad-CAM)
    offered = methods_for(model, list(dict.fromkeys([*methods, *METHODS])))[0]
    method = row[0].selectbox("Method to check", offered, key="randomise_method", format_func=_title)
    if not row[1].button("Run the randomisation check", key="trainer:randomise"):
        return
    with st.spinner("Randomising layer by layer ..."):
        steps, passed = _cascade(folder, image.numpy(), method)
    blocks = [name for name, _ in cascade_blocks(model)]
    for column, step in zip(st.columns(len(steps)), steps, strict=True):
        column.image(step.overlay, caption=f"{cascade_caption(step.randomised_up_to, blocks)} (SSIM {step.ssim:.2f})",
                     width="stretch", output_format="PNG")
    verdict = "passes" if passed else "FAILS"
    st.markdown(f"**{_title(method)} {verdict}** on this image: fully randomised, SSIM {steps[-1].ssim:.2f} and rank "
                f"correlation {steps[-1].spearman:.2f} to the original (pass: both below 0.5).")


def cascade_caption(randomised_up_to: str, blocks: list[str]) -> str:
    """A cascade step in words. blocks: the cascade's block names, output first (`cascade_blocks`): "head",
    "features.3" ... for the lab's networks, the module names ("fc", "layer4" ...) of an imported one."""
    if randomised_up_to == "original":
        return "trained weights"
    if randomised_up_to == blocks[0]:
        return "output layer's weights randomised"
    block = len(blocks) - blocks.index(randomised_up_to)
    return f"weights randomised from the output back to block {block} of {len(blocks) - 1}"


def _second_model(models: dict[str, str], first_folder: str, image: torch.Tensor, methods: list[str], look: dict,
                  class_names: list[str]) -> None:
    st.subheader("Compare with another model")
    st.caption("Train one on a shortcut (a marker that gives the answer away) and one on an uninformative marker; "
               "see docs/trainer-guide.md. The maps show which model looks at the marker.")
    first = next(name for name, folder in models.items() if folder == first_folder)
    others = [name for name in models if name != first]
    if not others:
        st.caption("Only one model fits these images; the trainer guide shows how to train a shortcut model.")
        return
    row = st.columns([2, 2])
    other = row[0].selectbox("Second model", others)
    method = row[1].selectbox("Method", methods or list(METHODS), key="compare_method", format_func=_title)
    left, right = st.columns(2)
    for column, name in ((left, first), (right, other)):
        model, card = _model(models[name])
        if not methods_for(model, [method])[0]:
            column.caption(f"{name} is a TorchScript model: {_title(method)} cannot run on it (docs/models.md).")
            continue
        prediction = predict_image(model, image)
        labels = card.dataset.class_names or class_names  # the model's own classes
        overlay = _overlay_png(models[name], image.numpy(), method, render_size(2), **look)
        column.image(overlay, caption=f"{name}: {labels[prediction.label]} at {percent(prediction.confidence)}",
                     width="stretch")
