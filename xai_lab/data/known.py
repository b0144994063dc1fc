"""Known datasets: class names, licences and checksums, so imports are recognised, not guessed.

MedMNIST 2D entries follow the official ``medmnist/info.py`` (MedMNIST+ release, Zenodo record
10519652): one file per size, each with its MD5. Files are recognised by checksum first and
by file name second, so a renamed official file still gets its class names and licence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MEDMNIST_RECORD = "https://zenodo.org/records/10519652/files"
MEDMNIST_CITATION = ("Yang J. et al., MedMNIST v2: a large-scale lightweight benchmark for 2D and 3D "
                     "biomedical image classification, Scientific Data 10:41 (2023)")
MEDMNIST_SIZES = (28, 64, 128, 224)


@dataclass(frozen=True)
class KnownDataset:
    key: str
    class_names: tuple[str, ...]
    task: str
    license: str
    description: str
    md5_by_size: dict[int, str] = field(default_factory=dict)

    def url(self, size: int) -> str:
        suffix = "" if size == 28 else f"_{size}"
        return f"{MEDMNIST_RECORD}/{self.key}{suffix}.npz?download=1"

    @property
    def single_label(self) -> bool:
        return not self.task.startswith("multi-label")


_ORGANS = ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver",
           "lung-left", "lung-right", "pancreas", "spleen")

MEDMNIST: dict[str, KnownDataset] = {d.key: d for d in [
    KnownDataset("pneumoniamnist", ("normal", "pneumonia"), "binary-class", "CC BY 4.0",
                 "PneumoniaMNIST: paediatric chest X-rays (Kermany et al. 2018), pneumonia vs normal",
                 {28: "28209eda62fecd6e6a2d98b1501bb15f", 64: "8f4eceb4ccffa70c672198ea285246c6",
                  128: "05b46931834c231683c68f40c47b2971", 224: "d6a3c71de1b945ea11211b03746c1fe1"}),
    KnownDataset("breastmnist", ("malignant", "normal, benign"), "binary-class", "CC BY 4.0",
                 "BreastMNIST: breast ultrasound, malignant vs normal+benign",
                 {28: "750601b1f35ba3300ea97c75c52ff8f6", 64: "742edef2a1fd1524b2efff4bd7ba9364",
                  128: "363e4b3f8d712e9b5de15470a2aaadf1", 224: "b56378a6eefa9fed602bb16d192d4c8b"}),
    KnownDataset("chestmnist", ("atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule",
                                "pneumonia", "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis",
                                "pleural", "hernia"), "multi-label, binary-class", "CC BY 4.0",
                 "ChestMNIST: NIH ChestX-ray14, 14 findings per image (multi-label)",
                 {28: "02c8a6516a18b556561a56cbdd36c4a8", 64: "9de6cd0b934ebb5b7426cfba5efbae16",
                  128: "db107e5590b27930b62dbaf558aebee3", 224: "45bd33e6f06c3e8cdb481c74a89152aa"}),
    KnownDataset("dermamnist", ("actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
                                "benign keratosis-like lesions", "dermatofibroma", "melanoma",
                                "melanocytic nevi", "vascular lesions"), "multi-class", "CC BY-NC 4.0",
                 "DermaMNIST: HAM10000 dermatoscopy, 7 diagnoses",
                 {28: "0744692d530f8e62ec473284d019b0c7", 64: "b70a2f5635c6199aeaa28c31d7202e1f",
                  128: "2defd784463fa5243564e855ed717de1", 224: "8974907d8e169bef5f5b96bc506ae45d"}),
    KnownDataset("octmnist", ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
                 "multi-class", "CC BY 4.0", "OCTMNIST: retinal OCT, 4 diagnoses",
                 {28: "c68d92d5b585d8d81f7112f81e2d0842", 64: "e229e9440236b774d9f0dfef9d07bdaf",
                  128: "0a97e76651ace45c5d943ee3f65b63ae", 224: "abc493b6d529d5de7569faaef2773ba3"}),
    KnownDataset("pathmnist", ("adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
                               "normal colon mucosa", "cancer-associated stroma",
                               "colorectal adenocarcinoma epithelium"), "multi-class", "CC BY 4.0",
                 "PathMNIST: colorectal histology (NCT-CRC-HE-100K), 9 tissue types",
                 {28: "a8b06965200029087d5bd730944a56c1", 64: "55aa9c1e0525abe5a6b9d8343a507616",
                  128: "ac42d08fb904d92c244187169d1fd1d9", 224: "2c51a510bcdc9cf8ddb2af93af1eadec"}),
    KnownDataset("retinamnist", ("0", "1", "2", "3", "4"), "ordinal-regression", "CC BY 4.0",
                 "RetinaMNIST: fundus photographs, diabetic retinopathy grade 0-4",
                 {28: "bd4c0672f1bba3e3a89f0e4e876791e4", 64: "afda852cc34dcda56f86ad2b2457dbcc",
                  128: "e48e916a24454daf90583d4e6efb1a18", 224: "eae7e3b6f3fcbda4ae613ebdcbe35348"}),
    KnownDataset("bloodmnist", ("basophil", "eosinophil", "erythroblast", "immature granulocytes",
                                "lymphocyte", "monocyte", "neutrophil", "platelet"), "multi-class", "CC BY 4.0",
                 "BloodMNIST: blood cell microscopy, 8 cell types",
                 {28: "7053d0359d879ad8a5505303e11de1dc", 64: "2b94928a2ae4916078ca51e05b6b800b",
                  128: "adace1e0ed228fccda1f39692059dd4c", 224: "b718ff6835fcbdb22ba9eacccd7b2601"}),
    KnownDataset("tissuemnist", ("collecting duct, connecting tubule", "distal convoluted tubule",
                                 "glomerular endothelial cells", "interstitial endothelial cells", "leukocytes",
                                 "podocytes", "proximal tubule segments", "thick ascending limb"),
                 "multi-class", "CC BY 4.0", "TissueMNIST: kidney cortex cells, 8 types",
                 {28: "ebe78ee8b05294063de985d821c1c34b", 64: "123ece2eba09d0aa5d698fda57103344",
                  128: "61b955355d7425a89687b06cca3ce0c2", 224: "b077128c4a949f0a4eb01517f9037b9c"}),
    KnownDataset("organamnist", _ORGANS, "multi-class", "CC BY 4.0", "OrganAMNIST: abdominal CT, axial, 11 organs",
                 {28: "68e3f8846a6bd62f0c9bf841c0d9eacc", 64: "2dcccc29b88e6da5a01161ef20cda288",
                  128: "eeae80d0a227a8d099027e1b3cfd3b60", 224: "50747347e05c87dd3aaf92c49f9f3170"}),
    KnownDataset("organcmnist", _ORGANS, "multi-class", "CC BY 4.0", "OrganCMNIST: abdominal CT, coronal, 11 organs",
                 {28: "b9ceb9546e10131b32923c5bbeaea2b1", 64: "3ce34a8724ea6f548e6db4744d03b6a9",
                  128: "773c1f009daa3fe5d9a2a201b2a7ed94", 224: "050f5e875dc056f6768abf94ec9995d1"}),
    KnownDataset("organsmnist", _ORGANS, "multi-class", "CC BY 4.0", "OrganSMNIST: abdominal CT, sagittal, 11 organs",
                 {28: "9ab87b696fb54e2a387ebe992d6ed5f1", 64: "53a6d115339d874c25e309a994ff46d3",
                  128: "ded0c5fa01a95dc4978b956f613e9b8e", 224: "b354719e553fbbb2513d5533f52a4cb1"}),
]}


@dataclass(frozen=True)
class KnownFile:
    """A specific redistributed file, recognised by its SHA-256."""

    description: str
    license: str
    citation: str
    class_names: tuple[str, ...]


KNOWN_FILES_BY_SHA256: dict[str, KnownFile] = {
    "e616d215165eabac5b40e686a27cdc050b96abdaf886ceb736b668b6f2491201": KnownFile(
        "Kermany paediatric chest radiographs, official test split (624 images, 224x224 grayscale, "
        "squashed by the redistributor)",
        "CC BY 4.0",
        "Kermany, Zhang, Goldbaum (2018), Mendeley Data v2, doi:10.17632/rscbjbr9sj.2; Cell 172(5):1122-1131",
        ("normal", "pneumonia"),
    ),
}


def medmnist_by_md5(md5: str) -> tuple[KnownDataset, int] | None:
    for dataset in MEDMNIST.values():
        for size, known_md5 in dataset.md5_by_size.items():
            if known_md5 == md5:
                return dataset, size
    return None


def medmnist_by_filename(stem: str) -> KnownDataset | None:
    """'pneumoniamnist' or 'pneumoniamnist_128' -> the PneumoniaMNIST entry."""
    return MEDMNIST.get(stem.lower().split("_")[0])
