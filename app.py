"""xai-lab in the browser: datasets, calibrated models and their cases.

    streamlit run app.py

A thin page over the library (no rules here). The study UI of the UI issue grows from it:
participant, researcher and trainer pages behind ``st.navigation``.
"""

from __future__ import annotations

import streamlit as st

from xai_lab.casebook import view_case
from xai_lab.data.storage import list_datasets, load_dataset
from xai_lab.model.storage import list_models, load_model

st.set_page_config(page_title="xai-lab", layout="wide")


@st.cache_resource
def cached_dataset(name: str):
    return load_dataset(name)


@st.cache_resource
def cached_model(folder: str):
    return load_model(folder)


st.title("xai-lab: cases and calibrated AI advice")
st.caption("Research and teaching only. Not for clinical use.")

cards = list_datasets()
if not cards:
    st.info("No datasets yet. Run `xai-lab demo` (or `xai-lab data synth --name synthetic`) and reload.")
    st.stop()

card = {c.name: c for c in cards}[st.sidebar.selectbox("Dataset", [c.name for c in cards])]
dataset = cached_dataset(card.name)
fitting = {folder.name: str(folder) for folder, model_card in list_models()
           if model_card.get("dataset", {}).get("content_sha256") == card.content_sha256}
model_name = st.sidebar.selectbox("Model", ["(no model)", *fitting], index=1 if fitting else 0)
split = st.sidebar.radio("Split", ["test", "val", "train"], horizontal=True)
index = int(st.sidebar.number_input("Case number", min_value=0, max_value=len(dataset[split]) - 1, value=0))
outline = st.sidebar.checkbox("Outline the true lesion", value=False, disabled=not card.has_masks)

model, model_card = cached_model(fitting[model_name]) if model_name in fitting else (None, None)
case = view_case(dataset, split, index, model, outline_lesion=outline)

left, right = st.columns([3, 2])
left.image(case.image, caption=f"{case.case_id} ({split})")
right.subheader("Truth")
right.write(case.true_label)
if case.ai_label is not None:
    right.subheader("AI advice")
    right.metric(case.ai_label, f"{case.ai_confidence:.0%} confident")
    test = model_card["metrics"]["test"]
    right.caption(f"Model '{model_card['name']}': test AUROC {test['auroc']:.3f}, accuracy {test['accuracy']:.3f}, "
                  f"ECE {test['ece']:.3f} (n={test['n']}).")
if case.metadata:
    with right.expander("Case metadata"):
        st.json(case.metadata)
