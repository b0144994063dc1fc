"""The synthetic default set: deterministic, masks on the lesions, difficulty and shortcut as stated."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, center_of_mass

from xai_lab.data.synth import SynthConfig, generate, marker_box, render_case
from xai_lab.errors import ConfigError


@pytest.fixture(scope="module")
def small_set():
    return generate(SynthConfig(n=120, size=64, seed=3))


def test_same_seed_gives_identical_data(small_set):
    again = generate(SynthConfig(n=120, size=64, seed=3))
    assert again.content_sha256() == small_set.content_sha256()
    np.testing.assert_array_equal(again.images, small_set.images)
    np.testing.assert_array_equal(again.masks, small_set.masks)
    for key, column in small_set.metadata.items():
        np.testing.assert_array_equal(again.metadata[key], column)


def test_other_seed_gives_other_images(small_set):
    other = generate(SynthConfig(n=120, size=64, seed=4))
    assert other.content_sha256() != small_set.content_sha256()
    assert not np.array_equal(other.images, small_set.images)


def test_a_case_does_not_depend_on_the_set_size(small_set):
    # Case i is drawn from its own stream: a smaller set of the same seed holds the same picture for
    # every case it draws with the same label and marker (labels are balanced per set, so some differ).
    smaller = generate(SynthConfig(n=60, size=64, seed=3))
    same_draw = [i for i in range(60) if smaller.labels[i] == small_set.labels[i]
                 and smaller.metadata["marker"][i] == small_set.metadata["marker"][i]]
    assert len(same_draw) >= 20
    for i in same_draw:
        np.testing.assert_array_equal(smaller.images[i], small_set.images[i], err_msg=f"case {i}")
        np.testing.assert_array_equal(smaller.masks[i], small_set.masks[i], err_msg=f"case {i}")


def test_shapes_labels_and_balance(small_set):
    assert small_set.images.shape == (120, 1, 64, 64) and small_set.images.dtype == np.uint8
    assert small_set.masks.shape == (120, 64, 64) and small_set.masks.dtype == bool
    assert np.bincount(small_set.labels).tolist() == [60, 60]
    for split in ("train", "val", "test"):
        assert set(small_set.labels[small_set.splits == split]) == {0, 1}
    assert len(set(small_set.case_ids)) == 120


def test_masks_exist_exactly_for_lesion_images(small_set):
    has_mask = small_set.masks.reshape(120, -1).any(axis=1)
    np.testing.assert_array_equal(has_mask, small_set.labels == 1)


@pytest.mark.parametrize("index", range(6))
def test_mask_covers_the_lesion_and_only_the_lesion(index):
    """Render one case with and without its lesion: the difference is the lesion alone,
    and it lies on the mask (not transposed, flipped or shifted)."""
    with_lesion = render_case(seed=11, index=index, size=96, has_lesion=True, marker=False)
    without = render_case(seed=11, index=index, size=96, has_lesion=False, marker=False)
    difference = np.abs(with_lesion.image - without.image)
    mask = with_lesion.mask
    assert mask.any()
    peak = np.unravel_index(np.argmax(difference), difference.shape)
    assert binary_dilation(mask, iterations=2)[peak], "the brightest change lies outside the mask"
    near_mask = binary_dilation(mask, iterations=max(2, int(with_lesion.metadata["lesion_radius"])))
    assert difference[near_mask].sum() / difference.sum() > 0.95
    centre_y, centre_x = center_of_mass(mask)
    assert abs(centre_x - with_lesion.metadata["lesion_x"]) < 1.5
    assert abs(centre_y - with_lesion.metadata["lesion_y"]) < 1.5


def test_difficulty_metadata_is_recorded(small_set):
    meta = small_set.metadata
    for column in ("detectability", "lesion_radius", "lesion_contrast", "noise_sigma", "mimic", "difficulty"):
        assert len(meta[column]) == 120
    positives = small_set.labels == 1
    assert (meta["detectability"][positives] > 0).all()
    assert (meta["detectability"][~positives] == 0).all()
    assert set(meta["difficulty"]) <= {"easy", "moderate", "hard"}
    # Faint lesions are labelled harder than conspicuous ones.
    hard = meta["detectability"][positives & (meta["difficulty"] == "hard")]
    easy = meta["detectability"][positives & (meta["difficulty"] == "easy")]
    assert hard.size and easy.size and hard.max() < easy.min()


def test_no_marker_without_shortcut(small_set):
    assert not small_set.metadata["marker"].any()


def test_shortcut_marker_correlates_with_the_label_at_the_chosen_rate():
    data = generate(SynthConfig(n=400, size=48, seed=1, shortcut_rate=0.9))
    marker = data.metadata["marker"].astype(bool)
    positives = data.labels == 1
    assert 0.82 <= marker[positives].mean() <= 0.97
    assert 0.03 <= marker[~positives].mean() <= 0.18
    # The marker is drawn in the top-right corner and is never part of a lesion mask.
    top, left, side = marker_box(48)
    corner = data.images[:, 0, top:top + side, left:left + side].astype(float).mean(axis=(1, 2))
    assert corner[marker].mean() > corner[~marker].mean() + 60
    assert not data.masks[:, top:top + side, left:left + side].any()


@pytest.mark.parametrize("size", [32, 200])
def test_size_is_configurable(size):
    data = generate(SynthConfig(n=20, size=size, seed=0))
    assert data.images.shape[2:] == (size, size) and data.masks.shape[1:] == (size, size)


@pytest.mark.parametrize("config, word", [
    (SynthConfig(n=5), "--n"),
    (SynthConfig(size=8), "--size"),
    (SynthConfig(shortcut_rate=1.5), "--shortcut"),
])
def test_invalid_settings_name_the_option(config, word):
    with pytest.raises(ConfigError, match=word):
        generate(config)
