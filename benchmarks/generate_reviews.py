"""Deterministic generator of Reviews-like DynamoDB native exports (gzip DynamoDB JSON lines).

The items carry the variety of real tables: sparse attributes, nested maps, lists of maps, string,
number and binary sets, binary, 38-digit numbers, a map whose only key is ``S``, a list mixing
types, NULLs, a case collision (``ReviewerName`` / ``reviewername``) and type mix-ups (a number
stored as a string in a few items). Same arguments, same bytes.

    python benchmarks/generate_reviews.py --items 1000000 --out benchmarks/out/reviews-1m
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import json
import os
import random
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import orjson

WORDS = (
    "the a great product works well after two weeks quality price battery screen sound fast "
    "delivery broke returned recommend would buy again not worth money excellent poor size fits "
    "color looks cheap sturdy design easy setup instructions missing customer service helpful "
    "love hate disappointed amazing perfect terrible okay decent value kids gift daily use "
    "comfortable heavy light small large charger cable app update version".split()
)
CATEGORIES = ["Books", "Electronics", "Home", "Toys", "Garden", "Sports", "Beauty", "Grocery"]
BRANDS = [f"Brand{i:03d}" for i in range(300)]
TAGS = ["gift", "sale", "new", "bestseller", "eco", "refurbished", "bundle", "prime", "import"]
LOCALES = ["en-US", "en-GB", "de-DE", "fr-FR", "ja-JP", "es-ES"]


def _vocabulary() -> tuple[list[str], list[float]]:
    rng = random.Random("vocabulary")
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["th", "ch", "st", "er"]
    extra = sorted({"".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(6000)})
    vocabulary = WORDS + extra
    weights = list(itertools.accumulate(1.0 / (rank + 10) for rank in range(len(vocabulary))))
    return vocabulary, weights  # cumulative, Zipf-like


VOCABULARY, WEIGHTS = _vocabulary()


def words(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choices(VOCABULARY, cum_weights=WEIGHTS, k=rng.randint(lo, hi)))


def decimal_text(units: int, scale: int) -> str:
    """``units / 10**scale`` as DynamoDB writes numbers: no exponent, no trailing zeros."""
    text = f"{units // 10**scale}.{units % 10**scale:0{scale}d}".rstrip("0").rstrip(".")
    return text


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def review_item(rng: random.Random, n: int) -> dict:
    created = 1_600_000_000_000 + n * 1_000 + rng.randint(0, 999)
    item = {
        "ReviewId": {"S": f"R{n:012X}"},
        "ProductId": {"S": f"B0{rng.randrange(36**8):08X}"},
        "CustomerId": {"S": f"C{rng.randrange(10**9):09d}"},
        "Rating": {"N": str(rng.randint(1, 5))},
        "HelpfulVotes": {"N": str(int(rng.expovariate(0.2)))},
        "ReviewTitle": {"S": words(rng, 1, 4)},
        "ReviewText": {"S": words(rng, 2, 14)},
        "ReviewDate": {"S": f"20{rng.randint(15, 25):02d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"},
        "CreatedAt": {"N": str(created)},
        "Verified": {"BOOL": rng.random() < 0.8},
        "Price": {"N": decimal_text(rng.randint(1, 99999), 2)},
        "Locale": {"S": rng.choice(LOCALES)},
        "ReviewerName": {"S": f"user{rng.randrange(10**6)}"},
        "Product": {
            "M": {
                "Category": {"S": rng.choice(CATEGORIES)},
                "Brand": {"S": rng.choice(BRANDS)},
                "Dimensions": {
                    "M": {
                        "H": {"N": decimal_text(rng.randint(1, 500), 1)},
                        "W": {"N": decimal_text(rng.randint(1, 500), 1)},
                        "Unit": {"S": "cm"},
                    }
                },
            }
        },
    }
    r = rng.random
    if r() < 0.7:
        item["TotalVotes"] = {"N": str(rng.randint(0, 5000))}
    if r() < 0.003:  # type mix-up: a number written as a string by some old client
        item["Rating"] = {"S": rng.choice(["5", "4", "five stars"])}
    if r() < 0.05:  # 38 significant digits
        item["LedgerAmount"] = {"N": decimal_text(rng.randrange(10**37, 10**38), 18)}
    if r() < 0.3:
        item["Tags"] = {"SS": sorted(set(rng.choices(TAGS, k=rng.randint(1, 4))))}
    if r() < 0.1:
        item["ImageHashes"] = {"BS": sorted({b64(rng.randbytes(16)) for _ in range(rng.randint(1, 3))})}
    if r() < 0.05:
        item["Thumbnail"] = {"B": b64(rng.randbytes(48))}
    if r() < 0.2:
        item["SentimentScores"] = {"NS": sorted({decimal_text(rng.randint(1, 999), 3) for _ in range(3)})}
    if r() < 0.15:
        item["Comments"] = {
            "L": [
                {
                    "M": {
                        "By": {"S": f"C{rng.randrange(10**9):09d}"},
                        "Text": {"S": words(rng, 3, 12)},
                        "At": {"N": str(created + rng.randint(1, 10**8))},
                    }
                }
                for _ in range(rng.randint(1, 3))
            ]
        }
    if r() < 0.05:  # a list mixing types
        item["History"] = {"L": [{"S": "edited"}, {"N": str(created + 5)}, {"BOOL": True}]}
    if r() < 0.02:
        item["Moderation"] = {"NULL": True}
    if r() < 0.01:  # a map whose only key is S: a map, not a type tag
        item["Labels"] = {"M": {"S": {"S": rng.choice(["small", "medium", "large"])}}}
    if r() < 0.001:  # case collision with ReviewerName
        item["reviewername"] = {"S": f"legacy{rng.randrange(10**6)}"}
    if r() < 0.001:  # a rare attribute a sample would miss
        item["Attachments"] = {"L": [{"B": b64(rng.randbytes(8))}]}
    return item


def write_file(args: tuple[str, int, int, int, int]) -> tuple[str, int, int]:
    path, seed, file_index, first, count = args
    rng = random.Random(f"{seed}/{file_index}")
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # gzip container, level 6
    raw = 0
    with open(path, "wb") as f:
        chunk = []
        for n in range(first, first + count):
            line = orjson.dumps({"Item": review_item(rng, n)}) + b"\n"
            raw += len(line)
            chunk.append(line)
            if len(chunk) == 2000:
                f.write(compressor.compress(b"".join(chunk)))
                chunk = []
        f.write(compressor.compress(b"".join(chunk)))
        f.write(compressor.flush())
    return path, count, raw


def generate(out: Path, items: int, files: int, seed: int = 7, processes: int = 2) -> dict:
    """Write the export under ``out`` (skipped when a manifest with the same arguments exists)."""
    manifest_path = out / "manifest.json"
    wanted = {"items": items, "files": files, "seed": seed, "generator": 3}
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest["arguments"] == wanted and all(Path(p).exists() for p in manifest["files"]):
            return manifest
    export_id = hashlib.sha1(json.dumps(wanted).encode()).hexdigest()[:16]
    data_dir = out / "AWSDynamoDB" / f"01700000000000-{export_id}" / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    per_file = -(-items // files)
    jobs = []
    for i in range(files):
        first = i * per_file
        count = max(0, min(per_file, items - first))
        name = hashlib.sha1(f"{export_id}/{i}".encode()).hexdigest()[:26]
        jobs.append((str(data_dir / f"{name}.json.gz"), seed, i, first, count))
    with ProcessPoolExecutor(processes) as pool:
        written = list(pool.map(write_file, jobs))
    manifest = {
        "arguments": wanted,
        "files": [p for p, _, _ in written],
        "items": sum(c for _, c, _ in written),
        "json_bytes": sum(r for _, _, r in written),
        "gzip_bytes": sum(os.path.getsize(p) for p, _, _ in written),
    }
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(__file__).parent / "out" / f"reviews-{args.items}"
    manifest = generate(out, args.items, args.files, args.seed)
    print(json.dumps({k: v for k, v in manifest.items() if k != "files"}))


if __name__ == "__main__":
    main()
