"""The layout of a view's augmentation parameter vector (`PARAM_DIM` floats), by name.

    crop     [0:6]   applied, top/H, left/W, height/H, width/W, area fraction
    flip     [6:7]   applied
    jitter   [7:16]  applied, brightness, contrast, saturation, hue factors, order of the 4 ops
    gray     [16:17] applied
    blur     [17:19] applied, sigma
    solarize [19:20] applied
    rotate   [20:22] applied, quarter turns k (counter-clockwise rotation by k·90°, k in 0..3)
"""
PARAM_SLICES = {
    "crop": slice(0, 6), "flip": slice(6, 7), "jitter": slice(7, 16),
    "gray": slice(16, 17), "blur": slice(17, 19), "solarize": slice(19, 20), "rotate": slice(20, 22),
}
PARAM_DIM = 22

# single fields (an int: one column; a slice: several)
CROP_BOX = slice(1, 6)
FLIP = 6
JITTER = 7
JITTER_FACTORS = slice(8, 12)  # brightness, contrast, saturation, hue
JITTER_ORDER = slice(12, 16)   # the op index at each of the four positions
GRAY = 16
BLUR, BLUR_SIGMA = 17, 18
SOLARIZE = 19
ROTATE, ROTATE_K = 20, 21
