"""Tiny files in the real public formats (COCO captions, refer pickles + instances.json, MDETR refexp json) and
a tiny random transformers CLIPModel folder. Tests write them into tmp_path; nothing is downloaded."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

# (image_id, width, height, captions); image 30's first caption repeats image 10's (COCO has such duplicates).
COCO_IMAGES = [
    (10, 32, 24, ["a red car on the road", "A red car."]),
    (20, 24, 32, ["a dog on a table", "the dog sits on the table", "a brown dog"]),
    (30, 40, 40, ["a red car on the road", "a blue car near a man"]),
    (40, 32, 32, ["a cat on the table", "the cat"]),
    (50, 30, 20, ["a man and a dog", "the man walks a dog"]),
    (60, 20, 30, ["a green tree", "a tree near the road"]),
]
WORDS = ["a", "the", "red", "blue", "green", "brown", "car", "dog", "cat", "man", "tree", "table", "road", "on",
         "near", "and", "sits", "walks", "left", "right", "person", "object"]


def coco_file_name(image_id: int, split: str = "train") -> str:
    return f"COCO_{split}2014_{image_id:012d}.jpg"


def write_images(image_dir: Path, images=COCO_IMAGES, split: str = "train") -> None:
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k, (image_id, w, h, _) in enumerate(images):
        arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        im = Image.fromarray(arr)
        if k == 1:
            im = im.convert("L")  # COCO holds greyscale JPEGs: loaders must convert to RGB
        im.save(image_dir / coco_file_name(image_id, split), format="JPEG", quality=90)


def write_coco(root: Path, images=COCO_IMAGES, split: str = "train") -> Path:
    """root/annotations/captions_<split>2014.json + root/<split>2014/*.jpg; returns the captions path."""
    write_images(root / f"{split}2014", images, split)
    ann_id = 1000
    data = {"info": {}, "licenses": [], "images": [], "annotations": []}
    for image_id, w, h, caps in images:
        data["images"].append({"id": image_id, "file_name": coco_file_name(image_id, split), "width": w,
                               "height": h, "license": 1})
        for cap in caps:
            data["annotations"].append({"id": ann_id, "image_id": image_id, "caption": cap + "\n"})
            ann_id += 1
    path = root / "annotations" / f"captions_{split}2014.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


# (ref_id, ann_id, image_id, split, sentences, bbox xywh)
REFS = [
    (0, 501, 10, "train", ["left car", "the red car"], [1.0, 2.0, 10.0, 8.0]),
    (1, 502, 20, "train", ["dog on table"], [4.0, 4.0, 16.0, 20.0]),
    (2, 503, 50, "testA", ["man on the left"], [0.0, 0.0, 30.0, 20.0]),
    (3, 504, 40, "val", ["cat"], [8.0, 8.0, 8.0, 8.0]),
]


def write_refer(refer_root: Path, dataset: str = "refcoco", split_by: str = "unc", refs=REFS) -> Path:
    """<refer_root>/<dataset>/refs(<split_by>).p (protocol-2 pickle of plain dicts) + instances.json."""
    ds = refer_root / dataset
    ds.mkdir(parents=True, exist_ok=True)
    sizes = {i: (w, h) for i, w, h, _ in COCO_IMAGES}
    records, anns, sent_id = [], [], 0
    for ref_id, ann_id, image_id, split, sents, bbox in refs:
        sentences = []
        for s in sents:
            sentences.append({"tokens": s.split(), "raw": s.upper(), "sent_id": sent_id, "sent": s})
            sent_id += 1
        records.append({"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "split": split,
                        "sentences": sentences, "sent_ids": [x["sent_id"] for x in sentences], "category_id": 1,
                        "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg"})
        anns.append({"id": ann_id, "image_id": image_id, "bbox": bbox, "category_id": 1, "iscrowd": 0,
                     "area": bbox[2] * bbox[3], "segmentation": []})
    instances = {"images": [{"id": i, "file_name": coco_file_name(i), "width": w, "height": h}
                            for i, (w, h) in sizes.items()], "annotations": anns, "categories": [{"id": 1}]}
    (ds / "instances.json").write_text(json.dumps(instances))
    with open(ds / f"refs({split_by}).p", "wb") as f:
        pickle.dump(records, f, protocol=2)
    return ds


def write_mdetr(path: Path, refs=REFS) -> Path:
    """MDETR finetune_<dataset>_<split>.json: one image entry + one annotation per expression."""
    sizes = {i: (w, h) for i, w, h, _ in COCO_IMAGES}
    images, anns, next_id = [], [], 0
    for _, ann_id, image_id, _, sents, bbox in refs:
        for s in sents:
            w, h = sizes[image_id]
            images.append({"file_name": coco_file_name(image_id), "height": h, "width": w, "id": next_id,
                           "original_id": image_id, "caption": s, "dataset_name": "refcoco",
                           "tokens_negative": [[0, len(s)]]})
            anns.append({"area": bbox[2] * bbox[3], "iscrowd": 0, "image_id": next_id, "category_id": 1,
                         "id": next_id, "bbox": bbox, "original_id": ann_id, "tokens_positive": [[0, len(s)]]})
            next_id += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"info": {}, "licenses": [], "images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "thing"}]}))
    return path


def write_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A random CLIPModel (text + vision towers, projection 16) with a char-level CLIP BPE vocab."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for w in WORDS:
        vocab[w + "</w>"] = len(vocab)
    for ch in "abcdefghijklmnopqrstuvwxyz.":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=32, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(image_size=16, patch_size=8, hidden_size=32, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=37),
        projection_dim=16,
    )
    CLIPModel(cfg).save_pretrained(folder)
    return folder


def write_fake_negatives(coco, path: Path, k_captions: int = 4, k_images: int = 2) -> Path:
    """A hard-negative index in the mine-negatives format with fixed choices (other images, id order)."""
    ids = [im.image_id for im in coco.images]
    hn_captions = {str(i): [c.caption_id for c in coco.captions if c.image_id != i][:k_captions] for i in ids}
    hn_images = {str(c.caption_id): [i for i in ids if i != c.image_id][-k_images:] for c in coco.captions}
    data = {"format": "dptune-hard-negatives", "version": 1, "embedder": "fake", "text_only": False,
            "captions_file": coco.source, "k_captions": k_captions, "k_images": k_images,
            "hn_captions": hn_captions, "hn_images": hn_images}
    path.write_text(json.dumps(data))
    return path
