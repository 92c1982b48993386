"""Hierarchical augmentation invariance: pretraining package and transfer benchmark suite."""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def pinned(*names: str) -> list[str]:
    """Requirement strings for `names`, pinned as in requirements/constraints.txt (the one place)."""
    pins = {}
    for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name = line.split("=")[0].split("<")[0].split(">")[0].strip()
            pins[name] = line
    return [pins.get(n, n) for n in names]


setup(
    name="hier-aug",
    version="0.1.0",
    description=__doc__,
    long_description=(ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # the presets stay in the checkout's top-level configs/ (the layout users know); the wheel carries the same
    # files as the package hier_aug_configs, which pretrain.config.shipped finds from any folder
    packages=find_packages(include=["pretrain*", "transfer*", "benchmarks*"]) + ["hier_aug_configs"],
    package_dir={"hier_aug_configs": "configs"},
    package_data={"hier_aug_configs": ["**/*.yaml", "**/*.txt", "**/*.py"]},
    include_package_data=True,
    entry_points={"console_scripts": [
        "hier-aug-pretrain = pretrain.train:main",
        "hier-aug-recipes = pretrain.config.recipes:main",
        "hier-aug-transfer = transfer.commands.run_transfer:main",
        "hier-aug-convert-d2 = transfer.commands.convert_to_d2:main",
        "hier-aug-extract = transfer.commands.extract_backbone:main",
        "hier-aug-check-data = transfer.commands.check_data:main",
        "hier-aug-bench = benchmarks.run:main",
        "hier-aug-demo-data = benchmarks.make_demo_data:main",
    ]},
    install_requires=pinned("torch", "torchvision", "submitit")
    + ["numpy", "pyyaml", "tqdm", "pillow", "pycocotools", "matplotlib", "tensorboard", "scipy"],
    extras_require={
        "seg": pinned("mmengine", "mmcv", "mmsegmentation") + ["ftfy", "regex"],
        "dev": ["pytest", "ruff"],
    },
)
