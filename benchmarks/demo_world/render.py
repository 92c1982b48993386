"""Rendering of the demo world: textured shapes on varied backgrounds, with scale and occlusion.

Each object class is a (shape, texture) pair. Colours come from overlapping per-class palettes,
so colour alone does not identify the class; shape and texture do. The colour split (`COLOUR_CLASSES`)
is the opposite case: a class is a shape in a hue band, so neither shape nor colour alone identifies it.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from transfer.datacheck import VOC_CLASSES

SHAPES = ("circle", "square", "triangle", "star", "cross", "hexagon", "diamond", "ellipse")
TEXTURES = ("solid", "hstripes", "checker", "dots", "vstripes", "diagonal")
HUES = np.linspace(0.0, 1.0, 8, endpoint=False)
# the colour split: class = (shape, hue band centre); 2 shapes x 3 hue bands, any texture
COLOUR_BANDS = {"red": 0.0, "green": 1 / 3, "blue": 2 / 3}
COLOUR_HUE_HALF_WIDTH = 0.04
COLOUR_CLASSES = tuple((shape, band) for shape in ("circle", "square") for band in COLOUR_BANDS)


@dataclass(frozen=True)
class WorldSpec:
    """What the world contains. `num_classes` object types take the first VOC class names."""

    num_classes: int = 6
    seed: int = 0
    cls_size: int = 96
    scene_size: int = 192
    max_objects: int = 3
    occlusion_prob: float = 0.3
    class_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if not 2 <= self.num_classes <= len(VOC_CLASSES):
            raise ValueError(f"num_classes must be in [2, {len(VOC_CLASSES)}], got {self.num_classes}")
        object.__setattr__(self, "class_names", VOC_CLASSES[: self.num_classes])

    def appearance(self, cls: int) -> tuple[str, str, np.ndarray]:
        """(shape, texture, hue palette) of class `cls`; palettes of 3 hues overlap between classes."""
        shape = SHAPES[cls % len(SHAPES)]
        texture = TEXTURES[(cls * 5 + cls // len(SHAPES)) % len(TEXTURES)]
        palette = HUES[[(cls * 3) % 8, (cls * 3 + 2) % 8, (cls * 3 + 5) % 8]]
        return shape, texture, palette


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v)) * 255.0


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Vertices of `shape` centred at (cx, cy) with outer radius r, rotated by `angle` radians."""
    if shape in ("circle", "ellipse"):
        t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        rx, ry = (r, r) if shape == "circle" else (r, 0.5 * r)
    elif shape == "star":
        t = np.linspace(0, 2 * np.pi, 10, endpoint=False)
        rx = ry = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
    elif shape == "cross":
        w = 0.35 * r
        pts = np.array([(w, r), (w, w), (r, w), (r, -w), (w, -w), (w, -r), (-w, -r), (-w, -w),
                        (-r, -w), (-r, w), (-w, w), (-w, r)])
        t, rad = np.arctan2(pts[:, 1], pts[:, 0]), np.hypot(pts[:, 0], pts[:, 1])
        rx = ry = rad
    else:
        n, aspect = {"square": (4, 1.0), "triangle": (3, 1.0), "hexagon": (6, 1.0), "diamond": (4, 0.55)}[shape]
        t = np.linspace(0, 2 * np.pi, n, endpoint=False) + (np.pi / 4 if shape == "square" else np.pi / 2)
        rx, ry = r, r * aspect
    x, y = rx * np.cos(t), ry * np.sin(t)
    ca, sa = np.cos(angle), np.sin(angle)
    return [(cx + a * ca - b * sa, cy + a * sa + b * ca) for a, b in zip(x, y)]


def _texture(texture: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Binary pattern (H, W) for `texture` with a random period and phase."""
    period = rng.uniform(5, 9)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64) + rng.uniform(0, period, size=2)[:, None, None]
    if texture == "solid":
        return np.ones((h, w), bool)
    if texture == "hstripes":
        return (y // (period / 2)) % 2 == 0
    if texture == "vstripes":
        return (x // (period / 2)) % 2 == 0
    if texture == "diagonal":
        return ((x + y) // (period / 2)) % 2 == 0
    if texture == "checker":
        return ((x // (period / 2)) + (y // (period / 2))) % 2 == 0
    return (np.mod(x, period) - period / 2) ** 2 + (np.mod(y, period) - period / 2) ** 2 > (period / 3.2) ** 2


def background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A varied background (H, W, 3) float in [0, 255]: gradient, smooth noise, stripes or clutter."""
    kind = rng.integers(4)
    c1, c2 = _hsv(rng.random(), rng.uniform(0, 0.5), rng.uniform(0.3, 0.9)), _hsv(rng.random(), rng.uniform(0, 0.5), rng.uniform(0.3, 0.9))
    y, x = np.mgrid[0:size, 0:size] / size
    if kind == 0:
        a = rng.uniform(0, 2 * np.pi)
        t = np.clip((np.cos(a) * x + np.sin(a) * y + 1) / 2, 0, 1)[..., None]
    elif kind == 1:
        grid = rng.random((5, 5))
        t = np.array(Image.fromarray((grid * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC))[..., None] / 255.0
    elif kind == 2:
        t = (np.sin((x * np.cos(rng.uniform(0, np.pi)) + y) * rng.uniform(6, 14) * np.pi) > 0)[..., None] * 0.35
    else:
        t = np.zeros((size, size, 1))
    img = c1 * (1 - t) + c2 * t
    if kind == 3:  # clutter: small untextured blobs
        pil = Image.fromarray(img.astype(np.uint8))
        draw = ImageDraw.Draw(pil)
        for _ in range(rng.integers(4, 10)):
            cx, cy, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(2, size / 14)
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(int(v) for v in _hsv(rng.random(), 0.4, 0.7)))
        img = np.asarray(pil, dtype=np.float64)
    return img + rng.normal(0, 4, img.shape)


def paint_object(img: np.ndarray, spec: WorldSpec, cls: int, cx: float, cy: float, r: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Paint one object of class `cls` into `img` (H, W, 3) in place; returns its full mask (H, W) bool."""
    shape, texture, palette = spec.appearance(cls)
    return _paint(img, shape, texture, palette[rng.integers(len(palette))] + rng.normal(0, 0.02), cx, cy, r, rng)


def _paint(img: np.ndarray, shape: str, texture: str, hue: float, cx: float, cy: float, r: float,
           rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    mask_img = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask_img).polygon(_polygon(shape, cx, cy, r, rng.uniform(0, 2 * np.pi)), fill=1)
    mask = np.asarray(mask_img, dtype=bool)
    fg = _hsv(hue, rng.uniform(0.55, 1.0), rng.uniform(0.6, 1.0))
    bg = fg * rng.uniform(0.25, 0.5)
    pattern = _texture(texture, h, w, rng)[..., None]
    img[mask] = np.where(pattern, fg, bg)[mask]
    return mask


def occlude(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Paint a grey occluding bar into `img` in place; returns its mask (H, W) bool."""
    h, w = img.shape[:2]
    bw, bh = rng.uniform(0.1, 0.25) * w, rng.uniform(0.3, 0.6) * h
    x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
    if rng.random() < 0.5:
        bw, bh = bh, bw
    m = Image.new("L", (w, h), 0)
    ImageDraw.Draw(m).rectangle([x0, y0, x0 + bw, y0 + bh], fill=1)
    mask = np.asarray(m, dtype=bool)
    img[mask] = rng.uniform(60, 200)
    return mask


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def classification_image(spec: WorldSpec, cls: int, rng: np.random.Generator) -> np.ndarray:
    """One object of class `cls`, random scale/position/rotation, maybe occluded: (S, S, 3) uint8."""
    s = spec.cls_size
    img = background(s, rng)
    r = rng.uniform(0.22, 0.42) * s
    cx, cy = rng.uniform(r * 0.8, s - r * 0.8, size=2)
    paint_object(img, spec, cls, cx, cy, r, rng)
    if rng.random() < spec.occlusion_prob:
        occlude(img, rng)
    return to_uint8(img)


def colour_image(size: int, cls: int, rng: np.random.Generator) -> np.ndarray:
    """One object of colour-split class `cls` (`COLOUR_CLASSES`: its shape, a hue within
    +-COLOUR_HUE_HALF_WIDTH of its band, any texture), random scale/position/rotation: (S, S, 3) uint8."""
    shape, band = COLOUR_CLASSES[cls]
    img = background(size, rng)
    r = rng.uniform(0.22, 0.42) * size
    cx, cy = rng.uniform(r * 0.8, size - r * 0.8, size=2)
    hue = COLOUR_BANDS[band] + rng.uniform(-COLOUR_HUE_HALF_WIDTH, COLOUR_HUE_HALF_WIDTH)
    _paint(img, shape, TEXTURES[rng.integers(len(TEXTURES))], hue, cx, cy, r, rng)
    return to_uint8(img)


@dataclass
class SceneObject:
    cls: int
    mask: np.ndarray  # (H, W) bool, visible part only
    difficult: bool  # mostly hidden (< 25% visible) or tiny: VOC "difficult", ignored in seg masks


def scene(spec: WorldSpec, rng: np.random.Generator, size: int | None = None,
          base: np.ndarray | None = None) -> tuple[np.ndarray, list[SceneObject]]:
    """A scene of 1..max_objects objects with scale variation and mutual occlusion.

    Returns the image (H, W, 3) uint8 and every object with a visible part; later objects and the
    occluding bar hide parts of earlier ones."""
    s = size or spec.scene_size
    img = background(s, rng) if base is None else base.astype(np.float64)
    objs: list[tuple[int, np.ndarray, np.ndarray]] = []  # (cls, full mask, visible mask)
    for _ in range(rng.integers(1, spec.max_objects + 1)):
        cls = int(rng.integers(spec.num_classes))
        r = s * rng.uniform(0.08, 0.28)
        cx, cy = rng.uniform(r * 0.7, s - r * 0.7, size=2)
        full = paint_object(img, spec, cls, cx, cy, r, rng)
        for _, _, vis in objs:
            vis &= ~full
        objs.append((cls, full, full.copy()))
    if rng.random() < spec.occlusion_prob:
        bar = occlude(img, rng)
        for _, _, vis in objs:
            vis &= ~bar
    kept = [SceneObject(c, v, bool(v.sum() < 0.25 * f.sum() or v.sum() < 16)) for c, f, v in objs if v.any()]
    return to_uint8(img), kept
