"""A deterministic DynamoDB native export (gzip JSON lines) with every DynamoDB type.

Sparse attributes, nested maps and lists, sets of every kind, binary, 38-digit and huge numbers,
NULLs, a map whose only key is ``S``, a case collision, and type mix-ups (a number stored as a
string, a map where a string is expected, a number no decimal128 holds) so that values get rescued.
"""

from __future__ import annotations

import base64
import gzip
import random
from pathlib import Path

import orjson

WORDS = "great product works well quality price battery fast broke returned love okay value gift".split()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def export_item(rng: random.Random, n: int) -> dict:
    r = rng.random
    item = {
        "pk": {"S": f"item#{n:08d}"},
        "Rating": {"N": str(rng.randint(1, 5))},
        "Title": {"S": " ".join(rng.choices(WORDS, k=rng.randint(1, 5)))},
        "Verified": {"BOOL": r() < 0.8},
        "Price": {"N": f"{rng.randint(1, 99999) / 100:.2f}".rstrip("0").rstrip(".")},
        "Product": {
            "M": {
                "Brand": {"S": f"Brand{rng.randrange(50):02d}"},
                "Dims": {"M": {"H": {"N": str(rng.randint(1, 500) / 10)}, "Unit": {"S": "cm"}}},
            }
        },
    }
    if r() < 0.6:
        item["Votes"] = {"N": str(rng.randint(0, 5000))}
    if r() < 0.003:
        item["Rating"] = {"S": rng.choice(["5", "five stars"])}  # a number written as a string
    if r() < 0.05:
        item["Ledger"] = {"N": f"{rng.randrange(10**19, 10**20)}.{rng.randrange(10**18):018d}"}  # 38 digits
    if r() < 0.002:
        item["Ledger"] = {"N": "1E+125"}  # no decimal128 holds it: rescued
    if r() < 0.3:
        item["Tags"] = {"SS": sorted(set(rng.choices(["gift", "sale", "new", "eco"], k=rng.randint(1, 3))))}
    if r() < 0.1:
        item["Hashes"] = {"BS": sorted({_b64(rng.randbytes(8)) for _ in range(rng.randint(1, 3))})}
    if r() < 0.05:
        item["Thumb"] = {"B": _b64(rng.randbytes(12))}
    if r() < 0.2:
        item["Scores"] = {"NS": sorted({f"0.{rng.randint(1, 999):03d}".rstrip("0") for _ in range(3)})}
    if r() < 0.15:
        item["Comments"] = {
            "L": [
                {"M": {"By": {"S": f"c{rng.randrange(999)}"}, "At": {"N": str(n + i)}}}
                for i in range(rng.randint(1, 3))
            ]
        }
    if r() < 0.05:
        item["History"] = {"L": [{"S": "edited"}, {"N": str(n)}, {"BOOL": True}, {"NULL": True}]}
    if r() < 0.02:
        item["Moderation"] = {"NULL": True}
    if r() < 0.01:
        item["Labels"] = {"M": {"S": {"S": rng.choice(["small", "large"])}}}  # a map, not a type tag
    if r() < 0.001:
        item["title"] = {"S": "legacy"}  # case collision with Title
    if r() < 0.002:
        item["Product"] = {"S": "unknown"}  # a string where a map is expected: rescued
    if r() < 0.001:
        item["Attachments"] = {"L": [{"B": _b64(rng.randbytes(4))}]}  # rare: a sample would miss it
    return item


def write_export(directory: Path, items: int, files: int, seed: int = 7) -> list[Path]:
    """``files`` gzip files ``part-N.json.gz`` holding ``items`` items in total; same arguments, same bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    paths, per_file = [], -(-items // files)
    for index in range(files):
        rng = random.Random(f"{seed}/{index}")
        first, last = index * per_file, min(items, (index + 1) * per_file)
        path = directory / f"part-{index}.json.gz"
        body = b"".join(orjson.dumps({"Item": export_item(rng, n)}) + b"\n" for n in range(first, last))
        path.write_bytes(gzip.compress(body, compresslevel=1, mtime=0))
        paths.append(path)
    return paths
