"""Hard-negative mining for ITM (paper Appendix B.1, steps 3-4 and footnote 4).

For every image we retrieve its top-``k_captions`` (20) most similar captions that are not its own, and for
every caption the top-``k_images`` (4) most similar images other than its own, by cosine similarity of
embeddings (the paper uses OpenCLIP ViT-H-14). True positives are excluded exactly: an image's own captions,
plus any caption elsewhere whose text is identical to one of them (COCO repeats short captions verbatim;
those would be false negatives); symmetrically a caption never retrieves an image holding the same text.

The run is resumable: embeddings and retrieval results are saved shard by shard (safetensors, written
atomically) in a work folder; re-running the same command skips finished shards.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import torch

from dptune.data.coco import CocoCaptions
from dptune.data.configs import MiningConfig
from dptune.data.embedders import Embedder
from dptune.data.hard_negatives import HN_FORMAT, HN_VERSION
from dptune.data.images import open_rgb
from dptune.utils.config import to_dict
from dptune.utils.io import atomic_write, load_json, load_tensors, save_json, save_tensors


def normalise_text(text: str) -> str:
    """Lower-case, strip punctuation and spaces: 'A dog.' and 'a  dog' are the same caption."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def exclusion_lists(coco: CocoCaptions) -> tuple[list[list[int]], list[list[int]]]:
    """Indices that count as positives: per image -> caption indices, per caption -> image indices."""
    img_index = {im.image_id: i for i, im in enumerate(coco.images)}
    by_text: dict[str, list[int]] = {}
    for j, cap in enumerate(coco.captions):
        by_text.setdefault(normalise_text(cap.text), []).append(j)
    img_excl: list[set[int]] = [set() for _ in coco.images]
    cap_excl: list[list[int]] = []
    for cap in coco.captions:
        same = by_text[normalise_text(cap.text)]  # includes this caption itself
        img_excl[img_index[cap.image_id]].update(same)
        cap_excl.append(sorted({img_index[coco.captions[s].image_id] for s in same}))
    return [sorted(s) for s in img_excl], cap_excl


def topk_excluding(queries: torch.Tensor, keys: torch.Tensor, exclude: list[list[int]], k: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine top-k of each query over ``keys``, never returning an index listed in ``exclude[q]``.

    queries (Q, D) and keys (K, D) are unit-norm; returns scores (Q, k) descending and indices (Q, k).
    """
    sims = queries.float() @ keys.float().T  # (Q, K)
    rows = torch.repeat_interleave(torch.arange(len(exclude)), torch.tensor([len(e) for e in exclude]))
    cols = torch.tensor([c for e in exclude for c in e], dtype=torch.long)
    sims[rows, cols] = float("-inf")  # true positives can never be selected
    scores, idx = sims.topk(k, dim=1)  # (Q, k), sorted descending
    return scores, idx


def _run_shards(work: Path, prefix: str, n: int, size: int, compute: Callable[[int, int], dict],
                desc: str, progress: bool) -> list[Path]:
    """Compute ``[a, b)`` item ranges into ``<prefix>_<s>.safetensors``, skipping shards already on disk."""
    from tqdm import tqdm

    paths = [work / f"{prefix}_{s:05d}.safetensors" for s in range(math.ceil(n / size))]
    done = sum(p.is_file() for p in paths)
    with tqdm(total=len(paths), initial=done, desc=desc, unit="shard", disable=not progress) as bar:
        for s, path in enumerate(paths):
            if path.is_file():
                continue
            save_tensors(path, compute(s * size, min(n, (s + 1) * size)))
            bar.update(1)
    return paths


def _embed_batches(items: list, embed: Callable[[list], torch.Tensor], batch: int) -> torch.Tensor:
    parts = [embed(items[a:a + batch]) for a in range(0, len(items), batch)]
    return torch.cat(parts).to(torch.float16)  # (n, D); fp16 halves disk/RAM, ranking is unaffected


def _load_cat(paths: list[Path], key: str) -> torch.Tensor:
    return torch.cat([load_tensors(p)[key] for p in paths])


def _caption_means(text_emb: torch.Tensor, coco: CocoCaptions) -> torch.Tensor:
    """Text-only fallback: an image is the normalised mean of its captions' embeddings, (N_img, D)."""
    img_index = {im.image_id: i for i, im in enumerate(coco.images)}
    owner = torch.tensor([img_index[c.image_id] for c in coco.captions])  # (N_cap,)
    sums = torch.zeros(len(coco.images), text_emb.shape[1]).index_add_(0, owner, text_emb.float())
    return torch.nn.functional.normalize(sums, dim=-1)


def _fingerprint(coco: CocoCaptions, embedder: Embedder, cfg: MiningConfig) -> dict:
    h = hashlib.sha1()
    for im in coco.images:
        h.update(f"i{im.image_id}".encode())
    for c in coco.captions:
        h.update(f"c{c.caption_id}:{c.text}".encode())
    plan = {k: v for k, v in to_dict(cfg).items() if k not in ("batch_size", "device")}
    return {"embedder": embedder.name, "data": h.hexdigest(), "num_images": len(coco.images),
            "num_captions": len(coco.captions), **plan}


def _check_state(work: Path, state: dict) -> None:
    path = work / "state.json"
    if path.is_file():
        old = load_json(path)
        if old != state:
            diff = sorted(k for k in set(old) | set(state) if old.get(k) != state.get(k))
            raise ValueError(f"work folder {work} holds a mining run with different {diff}; pass another "
                             f"--work-dir (or delete {work}) to start afresh")
    else:
        save_json(path, state)


def _retrieve(work: Path, prefix: str, queries: torch.Tensor, keys: torch.Tensor, exclude: list[list[int]],
              k: int, cfg: MiningConfig, progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    available = keys.shape[0] - max(len(e) for e in exclude)
    if available < k:
        raise ValueError(f"only {available} candidates remain after removing positives but k={k}; lower "
                         f"--k-captions/--k-images or mine on a larger captions file")

    def compute(a: int, b: int) -> dict:
        scores, idx = topk_excluding(queries[a:b], keys, exclude[a:b], k)
        return {"scores": scores, "idx": idx}

    paths = _run_shards(work, prefix, queries.shape[0], cfg.query_chunk, compute, f"retrieve {prefix}", progress)
    return _load_cat(paths, "scores"), _load_cat(paths, "idx")


def _embed_all(coco: CocoCaptions, embedder: Embedder, work: Path, cfg: MiningConfig, progress: bool
               ) -> tuple[torch.Tensor, torch.Tensor]:
    texts = [c.text for c in coco.captions]
    text_paths = _run_shards(work, "text", len(texts), cfg.shard_size,
                             lambda a, b: {"emb": _embed_batches(texts[a:b], embedder.embed_texts, cfg.batch_size)},
                             "embed captions", progress)
    text_emb = _load_cat(text_paths, "emb").float()  # (N_cap, D)
    if not embedder.supports_images:
        return text_emb, _caption_means(text_emb, coco)
    ids = [im.image_id for im in coco.images]

    def embed_images(batch_ids: list[int]) -> torch.Tensor:
        return embedder.embed_images([open_rgb(coco.image_path(i), f"COCO image {i}") for i in batch_ids])

    image_paths = _run_shards(work, "image", len(ids), cfg.shard_size,
                              lambda a, b: {"emb": _embed_batches(ids[a:b], embed_images, cfg.batch_size)},
                              "embed images", progress)
    return text_emb, _load_cat(image_paths, "emb").float()  # (N_img, D)


def _save_compact_json(path: Path, obj: dict) -> None:
    """Compact JSON (no indentation): the COCO train index holds ~2.5M ids, indenting would triple its size."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, separators=(",", ":"))

    atomic_write(path, write)


def mine_hard_negatives(coco: CocoCaptions, embedder: Embedder, out: str | Path, cfg: MiningConfig | None = None,
                        work_dir: str | Path | None = None, progress: bool = True) -> dict:
    """Mine hard negatives over ``coco`` and write the JSON index (:mod:`dptune.data.hard_negatives`) to ``out``.

    Partial progress lives in ``work_dir`` (default ``<out>.parts``); calling again with the same inputs
    resumes. Returns a small summary dict.
    """
    cfg = cfg or MiningConfig()
    out = Path(out)
    work = Path(work_dir) if work_dir is not None else out.with_name(out.name + ".parts")
    work.mkdir(parents=True, exist_ok=True)
    state = _fingerprint(coco, embedder, cfg)
    _check_state(work, state)
    text_emb, image_emb = _embed_all(coco, embedder, work, cfg, progress)
    img_excl, cap_excl = exclusion_lists(coco)
    c_scores, c_idx = _retrieve(work, "i2t", image_emb, text_emb, img_excl, cfg.k_captions, cfg, progress)
    i_scores, i_idx = _retrieve(work, "t2i", text_emb, image_emb, cap_excl, cfg.k_images, cfg, progress)
    cap_ids = [c.caption_id for c in coco.captions]
    img_ids = [im.image_id for im in coco.images]
    index = {
        "format": HN_FORMAT, "version": HN_VERSION, "embedder": embedder.name,
        "text_only": not embedder.supports_images, "captions_file": coco.source,
        "k_captions": cfg.k_captions, "k_images": cfg.k_images,
        "num_images": len(img_ids), "num_captions": len(cap_ids),
        "hn_captions": {str(i): [cap_ids[j] for j in row] for i, row in zip(img_ids, c_idx.tolist(), strict=True)},
        "hn_caption_scores": {str(i): [round(s, 5) for s in row] for i, row in zip(img_ids, c_scores.tolist(),
                                                                                   strict=True)},
        "hn_images": {str(c): [img_ids[j] for j in row] for c, row in zip(cap_ids, i_idx.tolist(), strict=True)},
        "hn_image_scores": {str(c): [round(s, 5) for s in row] for c, row in zip(cap_ids, i_scores.tolist(),
                                                                                 strict=True)},
    }
    _save_compact_json(out, index)
    return {"out": str(out), "work_dir": str(work), "images": len(img_ids), "captions": len(cap_ids),
            "embedder": embedder.name, "text_only": not embedder.supports_images}
