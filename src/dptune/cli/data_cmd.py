"""``dptune data``: prepare COCO / RefCOCO data for DPT (convert, mine negatives, cache latents, HN-MSCOCO).

Each subcommand is a thin layer over a library function in :mod:`dptune.data`; heavy imports happen in
``run`` so ``dptune --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

CONVERT_HELP = (
    "Convert refer-format RefCOCO/RefCOCO+/RefCOCOg pickles (refs(unc).p / refs(umd).p + instances.json) into "
    "a JSON index. Pickles can execute code when loaded, so this is the ONLY place dptune opens them: once, "
    "explicitly, with a restricted unpickler that allows only plain dict/list/str/int/float/tuple and refuses "
    "any class or function reference. Only convert files you downloaded from the official refer release; "
    "every other command reads the JSON index this writes."
)


# Flags that override config fields (dptune.data.configs holds the defaults and validation). Kept here, not
# read from the dataclasses, because importing dptune.data pulls in torch and `dptune --help` must stay fast.
_FLAGS: dict[str, tuple[type, str]] = {
    "k_captions": (int, "hard-negative captions kept per image (default 20, paper top-20)"),
    "k_images": (int, "hard-negative images kept per caption (default 4, paper top-4)"),
    "batch_size": (int, "items per model forward pass (default: 64 mining, 8 caching)"),
    "shard_size": (int, "items per saved shard, the unit of resume (default: 4096 mining, 256 caching)"),
    "query_chunk": (int, "queries per retrieval chunk; lower it if memory is short (default 256)"),
    "device": (str, "torch device (default cpu)"),
    "image_size": (int, "square side images are resized to, aspect not kept (default 512)"),
    "dtype": (str, "VAE compute dtype: float32, float16 or bfloat16 (default float32)"),
    "n_negatives": (int, "negatives per item and direction (default 3)"),
    "seed": (int, "sampling seed (default 0)"),
    "max_images": (int, "keep only the first N images (default: all)"),
}


def _add_fields(p: argparse.ArgumentParser, names: list[str]) -> None:
    for name in names:
        kind, text = _FLAGS[name]
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, help=text)


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML/JSON file of options; command-line flags override it")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _register_convert(sub) -> None:
    p = sub.add_parser("convert-refer", help="refer pickles -> JSON index (restricted unpickler, explicit)",
                       description=CONVERT_HELP)
    p.add_argument("--refer-dir", type=Path, required=True,
                   help="folder holding refcoco/, refcoco+/, refcocog/ (or one of them)")
    p.add_argument("--out", type=Path, required=True, help="JSON index to write")
    p.add_argument("--split-by", action="append", default=[], metavar="DATASET=SPLITBY",
                   help="refs file per dataset, e.g. refcocog=google (defaults: refcoco=unc, refcoco+=unc, "
                        "refcocog=umd)")


def _register_mine(sub) -> None:
    p = sub.add_parser("mine-negatives", help="top-k hard-negative captions per image / images per caption",
                       description="Embed COCO captions and images, then keep for every image its k most "
                                   "similar other captions and for every caption its k most similar other "
                                   "images (paper App. B.1). Resumable: re-run the same command after a stop.")
    p.add_argument("--captions", type=Path, required=True, help="COCO captions_{train,val}2014.json")
    p.add_argument("--image-dir", type=Path, help="COCO image folder (default: the official sibling folder)")
    p.add_argument("--out", type=Path, required=True, help="hard-negative JSON index to write")
    p.add_argument("--embedder", choices=["open_clip", "hf_clip", "sd_text"], required=True,
                   help="open_clip: paper's OpenCLIP (needs open_clip_torch); hf_clip: transformers CLIPModel "
                        "folder; sd_text: SD text encoder, text-only and weaker")
    p.add_argument("--model", required=True,
                   help="local checkpoint: open_clip .bin file, CLIPModel folder, or SD folder (sd_text)")
    p.add_argument("--open-clip-arch", default="ViT-H-14", help="open_clip architecture name")
    p.add_argument("--work-dir", type=Path, help="partial results for resuming (default: <out>.parts)")
    _add_fields(p, ["k_captions", "k_images", "batch_size", "shard_size", "query_chunk", "device"])
    _add_config(p)


def _register_cache(sub) -> None:
    p = sub.add_parser("cache-latents", help="VAE-encode images once into sharded safetensors",
                       description="Encode the images of a COCO captions file and/or referring-expression "
                                   "files with the SD VAE (latents x vae.config.scaling_factor). Resumable: "
                                   "finished shards are skipped.")
    p.add_argument("--captions", type=Path, help="COCO captions json whose images to cache")
    p.add_argument("--refs", type=Path, nargs="*", default=[], help="refer index / MDETR json(s)")
    p.add_argument("--image-dir", type=Path, help="COCO image folder (default: sibling of --captions)")
    p.add_argument("--vae", type=Path, required=True, help="local SD folder (uses vae/) or VAE folder")
    p.add_argument("--out", type=Path, required=True, help="cache folder to write")
    _add_fields(p, ["image_size", "shard_size", "batch_size", "device", "dtype"])
    _add_config(p)


def _register_hn(sub) -> None:
    p = sub.add_parser("build-hn-coco", help="HN-MSCOCO test set: 1 positive + 3 hard negatives per direction")
    p.add_argument("--captions", type=Path, required=True, help="COCO captions json of the test images")
    p.add_argument("--negatives", type=Path, required=True, help="index from mine-negatives on the same file")
    p.add_argument("--out", type=Path, required=True, help="HN-MSCOCO JSON to write")
    _add_fields(p, ["n_negatives", "seed", "max_images"])
    p.add_argument("--image-dir", type=Path, help="COCO image folder recorded in the output")
    p.add_argument("--config", type=Path, help="YAML/JSON file of options; flags override it")


def register(subparsers, name: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help="prepare COCO/RefCOCO data: convert, mine, cache, HN-MSCOCO",
                                   description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    for add in (_register_convert, _register_mine, _register_cache, _register_hn):
        add(sub)
    parser.set_defaults(_data_parser=parser)
    return parser


def _config(args: argparse.Namespace, cls: type, names: list[str]) -> Any:
    """Config = dataclass defaults <- --config file <- explicit flags."""
    from dptune.utils.config import from_dict, load_config_file

    values = load_config_file(args.config) if getattr(args, "config", None) else {}
    for name in names:
        if getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    return from_dict(cls, values)


def _split_by(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--split-by {pair!r} must look like DATASET=SPLITBY, e.g. refcocog=umd")
        ds, by = pair.split("=", 1)
        out[ds] = by
    return out


def _run_convert(args) -> dict:
    from dptune.data.refer_pickle import convert_refer

    return convert_refer(args.refer_dir, args.out, _split_by(args.split_by))


def _run_mine(args) -> dict:
    from dptune.data.coco import load_coco_captions
    from dptune.data.configs import MiningConfig
    from dptune.data.embedders import load_embedder
    from dptune.data.mining import mine_hard_negatives

    cfg = _config(args, MiningConfig, ["k_captions", "k_images", "batch_size", "shard_size", "query_chunk",
                                       "device"])
    coco = load_coco_captions(args.captions, args.image_dir)
    embedder = load_embedder(args.embedder, args.model, args.open_clip_arch, cfg.device)
    if embedder.supports_images and coco.image_dir is None:
        raise ValueError(f"no COCO image folder found next to {args.captions}; pass --image-dir")
    return mine_hard_negatives(coco, embedder, args.out, cfg, args.work_dir, progress=not args.no_progress)


def _cache_items(args) -> list[tuple[str, Path]]:
    from dptune.data.coco import default_image_dir, load_coco_captions
    from dptune.data.refcoco import load_ref_records

    files: dict[int, str] = {}
    image_dir = args.image_dir
    if args.captions is not None:
        coco = load_coco_captions(args.captions, args.image_dir)
        image_dir = image_dir or coco.image_dir
        files.update({im.image_id: im.file_name for im in coco.images})
    for path in args.refs:
        files.update({r.image_id: r.file_name for r in load_ref_records(path)})
    if not files:
        raise ValueError("nothing to cache: pass --captions and/or --refs")
    if image_dir is None and args.captions is not None:
        image_dir = default_image_dir(args.captions)
    if image_dir is None or not Path(image_dir).is_dir():
        raise FileNotFoundError(f"COCO image folder {image_dir} not found; pass --image-dir (e.g. coco/train2014)")
    return [(str(i), Path(image_dir) / files[i]) for i in sorted(files)]


def _run_cache(args) -> dict:
    from dptune.data.configs import LatentCacheConfig
    from dptune.data.latent_cache import cache_latents, load_vae, vae_encoder, vae_meta

    cfg = _config(args, LatentCacheConfig, ["image_size", "shard_size", "batch_size", "device", "dtype"])
    items = _cache_items(args)
    vae = load_vae(args.vae, cfg.device, cfg.dtype)
    meta = vae_meta(vae, str(args.vae))
    return cache_latents(items, vae_encoder(vae), args.out, cfg, meta, progress=not args.no_progress)


def _run_hn(args) -> dict:
    from dptune.data.coco import load_coco_captions
    from dptune.data.configs import HNCocoConfig
    from dptune.data.hard_negatives import HardNegatives
    from dptune.data.hn_coco import build_hn_coco

    cfg = _config(args, HNCocoConfig, ["n_negatives", "seed", "max_images"])
    coco = load_coco_captions(args.captions, args.image_dir)
    return build_hn_coco(coco, HardNegatives.load(args.negatives), args.out, cfg)


_RUNNERS = {"convert-refer": _run_convert, "mine-negatives": _run_mine, "cache-latents": _run_cache,
            "build-hn-coco": _run_hn}


def run(args: argparse.Namespace) -> int:
    from dptune.cli.main import UserError
    from dptune.utils.io import ArtefactError

    if not getattr(args, "data_command", None):
        args._data_parser.print_help()
        return 0
    try:
        summary = _RUNNERS[args.data_command](args)
    except (ArtefactError, ImportError) as e:  # both carry a message naming the problem and the fix
        raise UserError(str(e)) from e
    print(json.dumps(summary, sort_keys=True))
    return 0
