"""Model-based metrics on tiny random models, FID/IS on hand-computed cases, and missing-weights errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from dptune.evaluation.metrics_common import MissingDependencyError, MissingWeightsError, preprocess

WORDS = "a an and the of to red green blue cat dog circle square photo".split()


def _images(n=3, size=24, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# ---- CLIP ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    from transformers import CLIPConfig, CLIPModel

    from dptune.shapesworld.tokenizer import build_clip_tokenizer

    folder = tmp_path_factory.mktemp("clip")
    tok = build_clip_tokenizer(WORDS, max_length=16)
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=16,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=16,
    )
    CLIPModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_clip_score_matches_the_model_forward(tiny_clip_dir):
    from transformers import AutoTokenizer, CLIPModel

    from dptune.evaluation.metrics_clip import CLIPScorer

    scorer = CLIPScorer.from_transformers(tiny_clip_dir)
    images, texts = _images(), ["a red cat", "a blue dog", "the green square"]
    out = scorer(images, texts)
    model = CLIPModel.from_pretrained(tiny_clip_dir).eval()
    enc = AutoTokenizer.from_pretrained(tiny_clip_dir)(texts, padding=True, return_tensors="pt")
    px = preprocess(images, 32, (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
    with torch.no_grad():
        ref = model(**enc, pixel_values=px)
    cos = (ref.image_embeds * ref.text_embeds).sum(-1).numpy()  # both unit-normalised by the forward
    assert np.allclose([o["cosine"] for o in out], cos, atol=1e-5)
    assert [o["score"] for o in out] == pytest.approx([100 * max(c, 0.0) for c in cos], abs=1e-3)
    assert scorer(images, texts) == out  # deterministic
    assert out[0]["cosine"] != pytest.approx(scorer(images[:1], ["the green square"])[0]["cosine"])
    with pytest.raises(ValueError, match="one text per image"):
        scorer(images, texts[:2])


def test_clip_missing_weights_name_the_file(tmp_path, tiny_clip_dir):
    from dptune.evaluation.metrics_clip import CLIPScorer

    with pytest.raises(MissingWeightsError, match="does not exist"):
        CLIPScorer.from_transformers(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingWeightsError, match="config.json is missing"):
        CLIPScorer.from_transformers(tmp_path / "empty")
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text((tiny_clip_dir / "config.json").read_text())
    with pytest.raises(MissingWeightsError, match="model.safetensors"):
        CLIPScorer.from_transformers(tmp_path / "noweights")
    with pytest.raises(MissingWeightsError, match="huggingface-cli download"):
        CLIPScorer.from_transformers(None)


def test_open_clip_path_reports_what_is_missing(tmp_path):
    from dptune.evaluation.metrics_clip import CLIPScorer

    try:
        import open_clip  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="open_clip_torch"):
            CLIPScorer.from_open_clip("ViT-H-14", tmp_path / "open_clip_pytorch_model.bin")
    else:
        with pytest.raises(MissingWeightsError, match="open_clip_pytorch_model.bin"):
            CLIPScorer.from_open_clip("ViT-H-14", tmp_path / "open_clip_pytorch_model.bin")


# ---- BLIP ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_blip_dir(tmp_path_factory):
    from transformers import BertTokenizer, BlipConfig, BlipForImageTextRetrieval

    folder = tmp_path_factory.mktemp("blip")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizer(str(folder / "vocab.txt"))
    torch.manual_seed(0)
    text = dict(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=32,
        encoder_hidden_size=32,
        pad_token_id=0,
        bos_token_id=2,
        sep_token_id=3,
        eos_token_id=3,
    )
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    )
    BlipForImageTextRetrieval(
        BlipConfig(text_config=text, vision_config=vision, projection_dim=16, image_text_hidden_size=16)
    ).save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({"size": {"height": 32, "width": 32}}))
    return folder


def test_blip_itm_and_itc_scores(tiny_blip_dir):
    from dptune.evaluation.metrics_blip import BLIPScorer

    scorer = BLIPScorer.from_pretrained(tiny_blip_dir)
    assert scorer.size == 32 and scorer.model_type == "blip"
    images = _images(4)
    out = scorer(images, ["a red cat", "a blue dog", "the cat", "a photo of a square"])
    assert len(out) == 4 and all(0.0 <= o["score"] <= 100.0 and -100.0 <= o["itc"] <= 100.0 for o in out)
    # batching does not change per-image scores
    scorer.batch_size = 3
    again = scorer(images, ["a red cat", "a blue dog", "the cat", "a photo of a square"])
    assert [o["score"] for o in again] == pytest.approx([o["score"] for o in out], abs=1e-4)
    assert [o["itc"] for o in again] == pytest.approx([o["itc"] for o in out], abs=1e-4)
    assert len({round(o["score"], 6) for o in out}) > 1


def test_blip2_retrieval_model_loads_and_scores(tmp_path):
    from transformers import BertTokenizer, Blip2Config, Blip2ForImageTextRetrieval

    from dptune.evaluation.metrics_blip import BLIPScorer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    cfg = Blip2Config(
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        ),
        qformer_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=32,
            encoder_hidden_size=32,
            pad_token_id=0,
            use_qformer_text_input=True,
        ),
        num_query_tokens=4,
        image_text_hidden_size=16,
    )
    Blip2ForImageTextRetrieval(cfg).save_pretrained(tmp_path)
    BertTokenizer(str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)
    scorer = BLIPScorer.from_pretrained(tmp_path)
    assert scorer.model_type == "blip-2"
    out = scorer(_images(2), ["a red cat", "the blue dog"])
    assert all(0.0 <= o["score"] <= 100.0 and -100.0 <= o["itc"] <= 100.0 for o in out)
    assert out[0] != out[1]


def test_blip_missing_weights_and_wrong_model(tmp_path, tiny_clip_dir):
    from dptune.evaluation.metrics_blip import BLIPScorer

    with pytest.raises(MissingWeightsError, match="blip-itm-large-coco"):
        BLIPScorer.from_pretrained(tmp_path / "nope")
    with pytest.raises(ValueError, match="'clip' model"):
        BLIPScorer.from_pretrained(tiny_clip_dir)


# ---- FID and IS ------------------------------------------------------------------------------------------
class _TwoPixels(nn.Module):
    """Feature = the red value of the first two pixels, minus 128 (uint8 (B, 3, H, W) -> (B, 2))."""

    num_features = 2

    def forward(self, x):
        return x[:, 0, 0, :2].double() - 128.0


def _pixels(points):
    imgs = np.full((len(points), 2, 2, 3), 128, dtype=np.uint8)
    for i, (a, b) in enumerate(points):
        imgs[i, 0, 0, 0], imgs[i, 0, 1, 0] = 128 + a, 128 + b
    return imgs


def test_fid_with_a_tiny_feature_extractor_equals_the_closed_form():
    from dptune.evaluation.metrics_fid import fid_score, frechet_distance

    # real features: (+-1, +-1) -> mean 0, unbiased covariance 4/3 I; fake: (3 +- 2, 4 +- 2) -> mean (3, 4),
    # covariance 16/3 I.  FID = |(3, 4)|^2 + 2 * (4/3 + 16/3 - 2 * sqrt(64/9)) = 25 + 8/3.
    real = _pixels([(-1, -1), (-1, 1), (1, -1), (1, 1)])
    fake = _pixels([(1, 2), (1, 6), (5, 2), (5, 6)])
    expected = 25.0 + 8.0 / 3.0
    assert fid_score(real, fake, feature=_TwoPixels(), batch_size=3) == pytest.approx(expected, rel=1e-5)
    s1, s2 = np.eye(2) * 4 / 3, np.eye(2) * 16 / 3
    assert frechet_distance(np.zeros(2), s1, np.array([3.0, 4.0]), s2) == pytest.approx(expected)
    assert fid_score(real, real, feature=_TwoPixels()) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match=">= 2 images"):
        fid_score(real[:1], fake, feature=_TwoPixels())


class _PixelClassifier(nn.Module):
    """Logits over 8 classes: class = first pixel's red value (sharp) or uniform."""

    def __init__(self, sharp: bool):
        super().__init__()
        self.sharp = sharp

    def forward(self, x):
        logits = torch.zeros(x.shape[0], 8)
        if self.sharp:
            logits[torch.arange(x.shape[0]), x[:, 0, 0, 0].long() % 8] = 50.0
        return logits


def test_inception_score_on_known_classifiers():
    from dptune.evaluation.metrics_fid import inception_score

    imgs = np.zeros((8, 2, 2, 3), dtype=np.uint8)
    imgs[:, 0, 0, 0] = np.arange(8)  # 8 images, 8 distinct classes
    mean, _ = inception_score(imgs, _PixelClassifier(sharp=True), splits=1)
    assert mean == pytest.approx(8.0, rel=1e-4)  # confident and diverse: IS = number of classes
    mean, _ = inception_score(imgs, _PixelClassifier(sharp=False), splits=1)
    assert mean == pytest.approx(1.0, abs=1e-6)  # uniform predictions: IS = 1
    with pytest.raises(ValueError, match="splits"):
        inception_score(imgs[:3], _PixelClassifier(sharp=True), splits=10)


def test_standard_inception_reports_the_missing_file_then_the_dependency(tmp_path, monkeypatch):
    from dptune.evaluation.metrics_fid import INCEPTION_FILE, fid_score, inception_score

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    imgs = _images(4, size=8)
    with pytest.raises(MissingWeightsError, match=INCEPTION_FILE) as err:
        fid_score(imgs, imgs)
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in str(err.value)
    with pytest.raises(MissingWeightsError, match="--inception-weights"):
        inception_score(imgs, splits=2)
    weights = tmp_path / INCEPTION_FILE
    weights.write_bytes(b"not really weights")
    from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE

    if not _TORCH_FIDELITY_AVAILABLE:
        with pytest.raises(MissingDependencyError, match="torch-fidelity"):
            fid_score(imgs, imgs, inception_weights=weights)
