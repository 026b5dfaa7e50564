"""The data stage on the real LFW (../shared/lfw): the paper's counts, scikit-learn's pixels."""

import numpy as np
import pytest
from workflow_runner import SHARED_LFW, SHARED_LFW_REASON

from lfwcnn.config import default_settings
from lfwcnn.prepare import prepare
from lfwcnn.split import split_indices

pytestmark = [
    pytest.mark.real_lfw,
    pytest.mark.skipif(not SHARED_LFW.is_dir(), reason=SHARED_LFW_REASON),
]


@pytest.fixture(scope="module")
def prepared():
    return prepare(SHARED_LFW, default_settings().data, workers=2)


def test_paper_counts(prepared):
    assert prepared.summary["people"] == 34
    assert prepared.summary["images"] == 2370
    assert prepared.summary["images_per_person"]["George_W_Bush"] == 530
    assert prepared.data.images.shape == (2370, 64, 64, 3)
    train, test = split_indices(prepared.data.labels, test_fraction=0.25, seed=42)
    assert (len(train), len(test)) == (1777, 593)


def test_equals_scikit_learn_on_real_lfw(prepared, tmp_path):
    from test_prepare import sklearn_people

    theirs = sklearn_people(SHARED_LFW, tmp_path, min_faces=30, resize=0.5)
    np.testing.assert_array_equal(
        prepared.data.images, np.round(theirs.images * 255).astype(np.uint8)
    )
    np.testing.assert_array_equal(prepared.data.labels, theirs.target)


def test_manifest_digests_match_the_published_sums(prepared):
    sums_file = SHARED_LFW.parent / "lfw_meta" / "SHA256SUMS_deepfunneled.txt"
    if not sums_file.is_file():
        pytest.skip(f"{sums_file} absent")
    published = {}
    for line in sums_file.read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        published[name.lstrip("*./")] = digest
    for file, digest in zip(prepared.data.files, prepared.sha256, strict=True):
        assert published[file] == digest
