"""Perceptual hashing and near-duplicate grouping.

Hash: ``imagehash.phash`` with ``hash_size=16`` (256 bits: DCT of a 64x64 grey image, the
16x16 lowest frequencies thresholded at their median), taken of the image and of its mirror
image; the distance between two images is the smaller Hamming distance of the two pairings
(flipped copies count as copies).

Thresholds, measured on the 4,264 shared photos (see the dataset card):

- ``DUPLICATE_BITS = 32`` (12.5 % of the bits): the same photo. A copy resized to half and
  re-encoded at JPEG quality 50 lies at most 6 bits away, a 416x416 stretch at most 2, a
  +25 % brightness change at most 26. Within this distance only one image is kept.
  (Roboflow augmented copies with a +-15 degree rotation lie 6-132 bits apart, as far as
  unrelated photos: they are matched by file name instead, see ``build.dedupe_and_split``.)
- ``GROUP_BITS = 72``: the same scene. Every pair up to 76 bits that was looked at showed the
  same scene (burst photos, consecutive video frames, augmented copies); the first unrelated
  pairs appear at 86 and the bulk of unrelated pairs lies above 100 (mean about 128). Images
  this close stay in the dataset but share one split group, so they never straddle
  train / val / test.

Geometric edits (crop, rotation, padding) move a phash by 75-125 bits and are not caught; the
shared sets were already de-duplicated across folders by their stager with a padding-aware
dHash (DEDUP.txt), which covers the padded Kaggle copies.
"""

from __future__ import annotations

from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, ImageOps

HASH_SIZE = 16
DUPLICATE_BITS = 32
GROUP_BITS = 72


def phash_pair(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The 256-bit phash of an image and of its mirror image, packed into 4 uint64 each."""
    with Image.open(path) as im:
        grey = im.convert("L")
    a = imagehash.phash(grey, hash_size=HASH_SIZE).hash.flatten()
    b = imagehash.phash(ImageOps.mirror(grey), hash_size=HASH_SIZE).hash.flatten()
    return np.packbits(a).view(np.uint64), np.packbits(b).view(np.uint64)


def to_hex(h: np.ndarray) -> str:
    return h.view(np.uint8).tobytes().hex()


def close_pairs(
    hashes: np.ndarray, mirrored: np.ndarray, max_bits: int, block: int = 512
) -> list[tuple[int, int, int]]:
    """All pairs (i < j, distance) with distance <= max_bits; (N, 4) uint64 inputs."""
    n = len(hashes)
    out: list[tuple[int, int, int]] = []
    for start in range(0, n, block):
        a = hashes[start : start + block]
        d = np.zeros((len(a), n), np.int32)
        dm = np.zeros((len(a), n), np.int32)
        for k in range(hashes.shape[1]):
            d += np.bitwise_count(a[:, None, k] ^ hashes[None, :, k])
            dm += np.bitwise_count(a[:, None, k] ^ mirrored[None, :, k])
        d = np.minimum(d, dm)
        rows, cols = np.nonzero(d <= max_bits)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i = start + r
            if i < c:
                out.append((i, c, int(d[r, c])))
    return out


class UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)

    def groups(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for i in range(len(self.parent)):
            out.setdefault(self.find(i), []).append(i)
        return out
