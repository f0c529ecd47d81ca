"""Write the 1000 ImageNet-1k class names that the ``efficientnet-lite0`` classifier of DCT reports.

The names come from timm's bundled class files (``timm/data/_info/imagenet_synsets.txt`` gives the class
order, ``imagenet_synset_to_lemma.txt`` the names); they are read from the installed distribution's files
without importing timm (which needs torchvision):

    pip install --no-deps timm && python experiments/dct_imagenet_names.py && pip uninstall -y timm
"""

from __future__ import annotations

import json
from importlib.metadata import distribution
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src" / "dptune" / "assets" / "imagenet_classes.json"


def main() -> None:
    dist = distribution("timm")
    info = Path(dist.locate_file("timm/data/_info"))
    synsets = (info / "imagenet_synsets.txt").read_text().split()
    lemmas = dict(line.split("\t", 1) for line in (info / "imagenet_synset_to_lemma.txt").read_text().splitlines()
                  if "\t" in line)
    names = [lemmas[s].strip() for s in synsets]
    if len(names) != 1000:
        raise SystemExit(f"expected 1000 ImageNet classes, got {len(names)}")
    OUT.write_text(json.dumps({"source": f"timm {dist.version} timm/data/_info", "synsets": synsets,
                               "names": names}, indent=0) + "\n")
    print(f"wrote {OUT} ({len(names)} names, e.g. {names[281]!r}, {names[967]!r})")


if __name__ == "__main__":
    main()
