"""COCO + RefCOCO/+/g training and validation sets from a TrainConfig (``dptune probe --data coco``)."""

from __future__ import annotations

from pathlib import Path

from dptune.data.formats import DataFormatError

MDETR_TRAIN = ("finetune_refcoco_train.json", "finetune_refcoco+_train.json", "finetune_refcocog_train.json")


def referring_files(root: str | Path) -> list[Path]:
    """A refer index / MDETR json file, or a folder holding ``refer_index.json`` or MDETR train files
    (all found are combined: RefCOCO + RefCOCO+ + RefCOCOg, as the paper trains)."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"--refcoco-root {root} does not exist; pass the refer index from "
                                "`dptune data convert-refer` or a folder of MDETR finetune_*.json files")
    if (root / "refer_index.json").is_file():
        return [root / "refer_index.json"]
    found = [root / n for n in MDETR_TRAIN if (root / n).is_file()]
    if not found:
        raise FileNotFoundError(f"{root} holds neither refer_index.json nor MDETR files {list(MDETR_TRAIN)}; "
                                "run `dptune data convert-refer --out refer_index.json` first")
    return found


def build_coco_datasets(cfg, image_size: int):
    """(train, validation): expressions of split 'train' train; split 'val' validates (paper B.1 data)."""
    from dptune.data.coco import load_coco_captions
    from dptune.data.coco_dataset import CocoRefDataset
    from dptune.data.configs import CocoRefConfig
    from dptune.data.hard_negatives import HardNegatives
    from dptune.data.latent_cache import LatentCache
    from dptune.data.refcoco import load_ref_records

    if not cfg.coco_root or not cfg.refcoco_root or not cfg.negatives:
        raise ValueError("--data coco needs --coco-root (COCO folder), --refcoco-root (refer index or MDETR "
                         "folder) and --negatives (from `dptune data mine-negatives`); see docs/data.md")
    captions = Path(cfg.coco_root) / "annotations" / "captions_train2014.json"
    coco = load_coco_captions(captions)
    records = [r for f in referring_files(cfg.refcoco_root) for r in load_ref_records(f)]
    negatives = HardNegatives.load(cfg.negatives)
    latents = LatentCache(cfg.latent_cache) if cfg.latent_cache else None
    size = cfg.image_size or image_size
    make = lambda refs, seed: CocoRefDataset(  # noqa: E731
        coco, refs, negatives, CocoRefConfig(image_size=size, seed=seed, skip_missing=True), latents)
    train = [r for r in records if r.split == "train"]
    val = [r for r in records if r.split == "val"][: cfg.val_size]
    if not train:
        raise DataFormatError(f"no expressions of split 'train' in {cfg.refcoco_root}")
    return make(train, cfg.seed), make(val or train[: cfg.val_size], 10_000 + cfg.seed)
