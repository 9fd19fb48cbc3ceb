"""Glyph classification tasks rendered from the fonts that ship with matplotlib.

Each alphabet is one task: a class per character, samples drawn in a random font (among the
bundled fonts that cover the whole alphabet), size, rotation and offset. White glyph on black,
32x32 grey. Every sample is seeded by (seed, split, class, index), so a task is the same on every
machine with the same matplotlib fonts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lsml_hub.data.builtin.arrays import arrays_to_dataset_dict

CANVAS = 32
# Text fonts only: LastResort draws a box for every character and the Computer Modern files map
# Latin code points to math symbols, so a charmap check alone would let them in.
_FONT_FAMILIES = ("DejaVuSans", "DejaVuSerif", "STIXGeneral")
_SPLIT_IDS = {"train": 0, "test": 1}


@dataclass(frozen=True)
class Alphabet:
    """The characters of one glyph task, one class each."""

    name: str
    chars: str
    description: str


ALPHABETS = {
    a.name: a
    for a in (
        Alphabet("latin_upper", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "Latin capital letters (26)"),
        Alphabet("latin_lower", "abcdefghijklmnopqrstuvwxyz", "Latin small letters (26)"),
        Alphabet("printed_digits", "0123456789", "printed digits (10)"),
        Alphabet("greek", "αβγδεζηθικλμνξοπρστυφχψω", "Greek small letters (24)"),
        Alphabet("cyrillic", "АБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ", "Cyrillic capital letters (32)"),
        Alphabet("symbols", "+-×÷=≠<>≤≥%&@#$€£¥§¶©®±∞√∑∏∂∫?", "math and currency symbols (30)"),
    )
}


@functools.cache
def fonts_covering(chars: str) -> tuple[Path, ...]:
    """matplotlib's bundled TrueType fonts that have a glyph for every character of ``chars``."""
    import matplotlib
    from matplotlib.ft2font import FT2Font

    font_dir = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    needed = {ord(c) for c in chars}
    found = []
    for path in sorted(font_dir.glob("*.ttf")):
        if path.name.startswith(_FONT_FAMILIES) and needed <= set(FT2Font(str(path)).get_charmap()):
            found.append(path)
    return tuple(found)


@functools.cache
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    # A few fonts at 11 sizes serve thousands of glyphs: load each once.
    return ImageFont.truetype(str(path), size)


def render_glyph(char: str, font_path: Path, rng: np.random.Generator) -> np.ndarray:
    """One 32x32 uint8 image of ``char`` with random size, rotation and offset drawn from ``rng``."""
    size = int(rng.integers(16, 27))
    angle = float(rng.uniform(-15.0, 15.0))
    dx, dy = (int(v) for v in rng.integers(-3, 4, size=2))
    font = _font(font_path, size)
    big = Image.new("L", (2 * CANVAS, 2 * CANVAS), 0)
    ImageDraw.Draw(big).text((CANVAS + dx, CANVAS + dy), char, fill=255, font=font, anchor="mm")
    big = big.rotate(angle, resample=Image.Resampling.BILINEAR)
    half = CANVAS // 2
    return np.asarray(big.crop((half, half, half + CANVAS, half + CANVAS)), dtype=np.uint8)


def _render_split(alphabet: Alphabet, split: str, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    fonts = fonts_covering(alphabet.chars)
    images = np.empty((len(alphabet.chars) * per_class, CANVAS, CANVAS), dtype=np.uint8)
    labels = np.repeat(np.arange(len(alphabet.chars), dtype=np.int64), per_class)
    for i, label in enumerate(labels):
        rng = np.random.default_rng([seed, _SPLIT_IDS[split], int(label), i % per_class])
        font = fonts[int(rng.integers(len(fonts)))]
        images[i] = render_glyph(alphabet.chars[label], font, rng)
    return images, labels


def build_glyphs(alphabet: Alphabet, samples_per_class: int, seed: int) -> datasets.DatasetDict:
    """Render ``samples_per_class`` train and a fifth as many test samples of every character."""
    test_per_class = max(10, samples_per_class // 5)
    splits = {
        "train": _render_split(alphabet, "train", samples_per_class, seed),
        "test": _render_split(alphabet, "test", test_per_class, seed),
    }
    return arrays_to_dataset_dict(splits, list(alphabet.chars))
