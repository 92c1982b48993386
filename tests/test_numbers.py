"""Numbers a user reports, pinned against references the code under test did not produce: a brute-force
loop for kNN votes and accuracies, binomial bounds for augmentation probabilities, and every report
cell (Markdown, CSV, LaTeX) recomputed from the metrics.json files it came from."""
import csv
import math
import random
import statistics

import pytest
import torch
import yaml

from pretrain.transforms.augment import PARAM_SLICES, AugPipeline
from transfer.classification.knn import knn_predict, per_class_accuracy, topk_accuracy

from .conftest import write_cell


def _knn_loop(train_f, train_y, test_f, num_classes, k, t):
    """Weighted cosine kNN, one test sample at a time, in plain Python."""
    out = []
    for q in test_f.tolist():
        sims = []
        for x, y in zip(train_f.tolist(), train_y.tolist()):
            cos = sum(a * b for a, b in zip(q, x)) / (math.sqrt(sum(a * a for a in q)) * math.sqrt(sum(b * b for b in x)))
            sims.append((cos, y))
        sims.sort(key=lambda s: -s[0])
        votes = [0.0] * num_classes
        for cos, y in sims[:k]:
            votes[y] += math.exp(cos / t)
        out.append(votes)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("k,t", [(1, 0.07), (5, 0.07), (7, 0.5), (200, 0.1)])
def test_knn_votes_equal_a_brute_force_loop(k, t):
    g = torch.Generator().manual_seed(k)
    train_f, test_f = torch.randn(40, 6, generator=g, dtype=torch.float64), torch.randn(9, 6, generator=g, dtype=torch.float64)
    train_y = torch.randint(0, 3, (40,), generator=g)
    got = knn_predict(train_f, train_y, test_f, 3, k=k, temperature=t, chunk=4).double()
    want = _knn_loop(train_f, train_y, test_f, 3, min(k, 40), t)
    # each row is the published votes times one positive factor (its nearest neighbour's vote is 1): equal shares
    torch.testing.assert_close(got / got.sum(1, keepdim=True), want / want.sum(1, keepdim=True), rtol=1e-9, atol=1e-12)
    assert (got.max(1).values >= 1).all()


def test_knn_is_stable_for_any_temperature_by_hand():
    """Query (1, 0); its neighbours at angles 0.1 (class 1), 0.2 and 0.25 rad (class 0), k = 3. By hand:
    T = 0.07: class 1's share is 1 / (1 + exp(-(cos .1 - cos .2) / T) + exp(-(cos .1 - cos .25) / T))
    = 1 / (1 + 0.80784 + 0.68885) = 0.40054, so the two class-0 neighbours win; T = 1e-6 (exp(cos / T)
    overflows every vote in float32 and float64): the nearest neighbour decides alone, class 1."""
    angles = torch.tensor([0.1, 0.2, 0.25])
    train_f = torch.stack([angles.cos(), angles.sin()], 1)
    train_y = torch.tensor([1, 0, 0])
    query = torch.tensor([[1.0, 0.0]])
    s = knn_predict(train_f, train_y, query, 2, k=3, temperature=0.07)
    assert float(s[0, 1] / s.sum()) == pytest.approx(0.40054, abs=2e-5) and s.argmax(1).item() == 0
    s = knn_predict(train_f, train_y, query, 2, k=3, temperature=1e-6)
    assert torch.isfinite(s).all() and s[0].tolist() == [0.0, 1.0]


def test_knn_at_a_tiny_temperature_is_one_nearest_neighbour_on_random_features():
    """T = 1e-6 with k = 20 gives the top-1 of a 1-NN written as a loop (float32 features, 5 classes)."""
    g = torch.Generator().manual_seed(3)
    train_f, test_f = torch.randn(200, 8, generator=g), torch.randn(60, 8, generator=g)
    train_y, test_y = torch.randint(0, 5, (200,), generator=g), torch.randint(0, 5, (60,), generator=g)
    nn1 = []
    for q in test_f.tolist():
        cos = [sum(a * b for a, b in zip(q, x)) / math.sqrt(sum(a * a for a in q) * sum(b * b for b in x)) for x in train_f.tolist()]
        nn1.append(train_y[max(range(len(cos)), key=cos.__getitem__)].item())
    want = 100 * sum(p == y for p, y in zip(nn1, test_y.tolist())) / 60
    got = topk_accuracy(knn_predict(train_f, train_y, test_f, 5, k=20, temperature=1e-6), test_y, ks=(1,))
    assert got["top1"] == pytest.approx(want, abs=1e-3)


def test_knn_with_a_known_answer_and_accuracies_by_hand():
    train_f = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0]])
    train_y = torch.tensor([0, 0, 1, 1, 2])
    test_f = torch.tensor([[1.0, 0.05], [0.05, 1.0], [-1.0, 0.1]])
    scores = knn_predict(train_f, train_y, test_f, 3, k=1)
    assert scores.argmax(1).tolist() == [0, 1, 2]
    s = torch.tensor([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    y = torch.tensor([1, 2, 2, 0])  # argmax: 1, 0, 2, 0 -> 3 of 4 right; top-2 sets {1,2}, {0,1}, {2,1}, {0,1}
    assert topk_accuracy(s, y, ks=(1, 2)) == {"top1": 75.0, "top2": 75.0}
    assert per_class_accuracy(s, y, 3) == [100.0, 100.0, 50.0]


def test_augmentation_probabilities_and_ranges_match_their_settings():
    """Frequencies within 4.5 binomial standard deviations of the configured p; factors inside their ranges."""
    pipe = AugPipeline(size=64, types=("crop", "flip", "jitter", "gray", "blur", "solarize", "rotate"), flip_p=0.5,
                       jitter_p=0.8, gray_p=0.2, blur_p=0.5, solarize_p=0.3, rotate_p=0.4)
    g = torch.Generator().manual_seed(0)
    n = 3000
    vs = torch.stack([pipe.sample(100, 150, g) for _ in range(n)])
    for flag, p in ((6, 0.5), (7, 0.8), (16, 0.2), (17, 0.5), (19, 0.3), (20, 0.4)):
        assert abs(vs[:, flag].mean().item() - p) < 4.5 * math.sqrt(p * (1 - p) / n), (flag, vs[:, flag].mean())
    jit = vs[vs[:, 7] == 1]
    for col, (lo, hi) in zip(range(8, 12), ((0.6, 1.4), (0.6, 1.4), (0.6, 1.4), (-0.1, 0.1))):
        assert lo <= jit[:, col].min() and jit[:, col].max() <= hi and jit[:, col].max() - jit[:, col].min() > 0.9 * (hi - lo)
    blur = vs[vs[:, 17] == 1, 18]
    assert 0.1 <= blur.min() and blur.max() <= 2.0 and blur.max() - blur.min() > 0.9 * 1.9  # sigma spans (0.1, 2.0)
    crop = vs[:, PARAM_SLICES["crop"]]
    area, ratio = crop[:, 5], (crop[:, 4] * 150) / (crop[:, 3] * 100)
    assert 0.19 <= area.min() and area.max() <= 1.0 and (3 / 4) * 0.97 <= ratio.min() and ratio.max() <= (4 / 3) * 1.03
    assert (crop[:, 1] + crop[:, 3] <= 1 + 1e-6).all() and (crop[:, 2] + crop[:, 4] <= 1 + 1e-6).all()


def test_every_report_cell_is_the_mean_and_std_of_its_metrics(tmp_path):
    """Random values in each task's metrics.json; the CSV, Markdown and LaTeX cells recomputed here."""
    from benchmarks.report import COLUMNS, write_report
    from benchmarks.suite import load_suite

    tasks = list(COLUMNS)
    doc = {"name": "t", "output": str(tmp_path / "bench"), "seeds": [0, 1, 2], "baseline": "a",
           "checkpoints": [{"name": "a", "path": "random"}, {"name": "b", "path": "random"}], "tasks": {t: [] for t in tasks}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    suite = load_suite(tmp_path / "s.yaml")
    rnd = random.Random(0)
    written = {}
    for ck in suite.checkpoints:
        for task in tasks:
            for seed in suite.seeds:
                vals = {c: round(rnd.uniform(10, 90), 3) for c, _ in COLUMNS[task]}
                m = {"protocol": "standard"}
                for c, v in vals.items():  # laid out as each task writes it
                    if task in ("voc_seg", "cityscapes_seg", "linear_cls", "knn", "colour_probe"):
                        m[{"APbb": "AP"}.get(c, c)] = v
                    elif task == "invariance":  # matrix.layer4.<augmentation>.mean
                        m.setdefault("matrix", {}).setdefault("layer4", {})[c.split("@")[0]] = {"mean": v}
                    elif task == "voc_det":
                        m.setdefault("bbox", {})[c] = v
                    else:
                        kind, key = ("bbox", "AP" + c[4:]) if c.startswith("APbb") else ("segm", "AP")
                        m.setdefault(kind, {})[key] = v
                write_cell(suite, ck, task, seed, m)
                for c, v in vals.items():
                    written.setdefault((ck.name, task, c), []).append(v)
    report = write_report(suite).read_text()
    with open(suite.output / "results.csv", newline="") as f:
        rows = {(r["checkpoint"], r["task"], r["metric"]): r for r in csv.DictReader(f) if r["row"] == "measured"}
    tex = (suite.output / "results.tex").read_text()
    assert len(rows) == len(written) == 2 * sum(len(c) for c in COLUMNS.values())
    for key, vals in written.items():
        mean, std = statistics.mean(vals), statistics.stdev(vals)
        r = rows[key]
        assert float(r["mean"]) == pytest.approx(mean, abs=1e-4) and float(r["std"]) == pytest.approx(std, abs=1e-4), key
        base = statistics.mean(written[("a", key[1], key[2])])
        if key[0] == "b":
            assert float(r["delta"]) == pytest.approx(mean - base, abs=1e-4), key
    # Markdown and LaTeX: each checkpoint's row holds its cells in column order, rounded to 2 decimals
    import re

    order = [(t, c) for t in suite.tasks for c, _ in COLUMNS[t]]
    for ck in ("a", "b"):
        md_row = next(line for line in report.splitlines() if line.startswith(f"| {ck} |"))
        tex_row = next(line for line in tex.splitlines() if line.startswith(f"{ck} &"))
        for text, sep in ((md_row, "±"), (tex_row, r"\$\\pm\$")):
            cells = [(float(m), float(s)) for m, s in re.findall(rf"(-?\d+\.\d+) {sep} (\d+\.\d+)", text)]
            assert len(cells) == len(order), text
            for (t, c), (m, s) in zip(order, cells):
                vals = written[(ck, t, c)]
                assert m == pytest.approx(statistics.mean(vals), abs=0.0051) and s == pytest.approx(statistics.stdev(vals), abs=0.0051)


def test_difference_intervals_on_constructed_seeds():
    from scipy import stats as sps

    from benchmarks.stats import difference

    # paired: d = (1, 2, 2); mean 5/3, sd sqrt(1/3), t(0.975, 2) = 4.302653 (tables: 4.303)
    d = difference({0: 2.0, 1: 4.0, 2: 5.0}, {0: 1.0, 1: 2.0, 2: 3.0})
    half = 4.302653 * math.sqrt(1 / 3) / math.sqrt(3)
    assert d["kind"] == "paired" and d["n"] == 3 and d["contains_zero"] is False
    assert d["delta"] == pytest.approx(5 / 3) and d["low"] == pytest.approx(5 / 3 - half, abs=1e-5)
    assert d["high"] == pytest.approx(5 / 3 + half, abs=1e-5)
    # pairing uses only the common seeds (the baseline's extra seed 3 is left out)
    assert difference({0: 2.0, 1: 4.0, 2: 5.0}, {0: 1.0, 1: 2.0, 2: 3.0, 3: 100.0})["delta"] == pytest.approx(5 / 3)
    # unpaired (no common seeds): Welch. means 11 and 59/6; variances 2 and 13/12; df by Welch-Satterthwaite
    d = difference({0: 10.0, 1: 12.0}, {5: 9.0, 6: 9.5, 7: 11.0})
    vx, vb = 2 / 2, (13 / 12) / 3
    df = (vx + vb) ** 2 / (vx ** 2 / 1 + vb ** 2 / 2)
    half = sps.t.ppf(0.975, df) * math.sqrt(vx + vb)
    assert d["kind"] == "unpaired" and df == pytest.approx(1.7392, abs=1e-4)
    assert d["delta"] == pytest.approx(11 - 59 / 6) and d["low"] == pytest.approx(11 - 59 / 6 - half) and d["contains_zero"] is True
    # a row clearly worse: the interval lies below 0 and does not contain it
    d = difference({0: 0.0, 1: 1.0, 2: 1.5}, {0: 1.0, 1: 2.0, 2: 3.0})
    assert d["high"] < 0 and d["contains_zero"] is False
    # one seed: the difference of the means, no interval
    d = difference({0: 5.0}, {0: 3.0, 1: 4.0})
    assert d["kind"] == "none" and d["delta"] == 1.5 and d["low"] is None and d["contains_zero"] is None


def test_report_shows_each_difference_with_its_interval(tmp_path):
    """Markdown, CSV and LaTeX carry the constructed intervals; a figure of the differences is drawn."""
    from benchmarks.report import write_report
    from benchmarks.suite import load_suite

    doc = {"name": "ci", "output": str(tmp_path / "bench"), "seeds": [0, 1, 2], "baseline": "base", "references": False,
           "checkpoints": [{"name": n, "path": "random"} for n in ("base", "better", "same", "single")],
           "tasks": {"knn": [], "knn@layer2": ["--stage", "2"]}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    suite = load_suite(tmp_path / "s.yaml")
    values = {"base": [1.0, 2.0, 3.0], "better": [2.0, 4.0, 5.0], "same": [1.5, 1.5, 3.5], "single": [7.0]}
    for ck in suite.checkpoints:
        for task in suite.tasks:
            for seed, v in enumerate(values[ck.name]):
                write_cell(suite, ck, task, seed, {"protocol": "standard", "top1": v, "stage": 2 if "@" in task else 4})
    report = write_report(suite).read_text()
    diffs = report.split("## Differences to base")[1]
    half = 4.302653 * math.sqrt(1 / 3) / math.sqrt(3)
    better = f"+1.67 [{5 / 3 - half:+.2f}, {5 / 3 + half:+.2f}]"
    assert f"| better | {better} | {better} |" in diffs
    assert "| same | +0.17 [" in diffs and "(0 in CI)" in diffs.split("| same |")[1].splitlines()[0]
    assert "| single | +5.00 (1 seed: no interval) |" in diffs and "kNN layer2 top1" in diffs
    with open(suite.output / "results.csv", newline="") as f:
        rows = {(r["checkpoint"], r["task"]): r for r in csv.DictReader(f)}
    r = rows[("better", "knn")]
    assert float(r["delta"]) == pytest.approx(5 / 3, abs=1e-4) and float(r["delta_ci_low"]) == pytest.approx(5 / 3 - half, abs=1e-4)
    assert float(r["delta_ci_high"]) == pytest.approx(5 / 3 + half, abs=1e-4) and r["delta_ci"] == "paired" and r["ci_contains_0"] == "false"
    assert rows[("same", "knn")]["ci_contains_0"] == "true" and rows[("single", "knn")]["delta_ci_low"] == ""
    tex = (suite.output / "results.tex").read_text()
    assert tex.count(r"\begin{tabular}") == 2 and f"better & {better} & {better}" in tex
    assert (suite.output / "figures/knn_diff.png").stat().st_size > 1000


def test_the_latex_tables_carry_each_mark_sign_and_column_where_its_number_is(tmp_path):
    """results.tex against hand-made cells: protocol flags on the means (paper: §, non-standard: dagger), the
    published linear-probe values with the marks of their notes in order of appearance (supervised: 1, SimSiam's
    LARS probe: 2, MoCo v2: none), and the difference table's signs, intervals and "(0 in CI)" exactly on the row
    whose interval contains 0; columns in the suite's task order."""
    from benchmarks.report import write_report
    from benchmarks.suite import load_suite

    doc = {"name": "tex", "output": str(tmp_path / "bench"), "seeds": [0, 1, 2], "baseline": "base", "references": True,
           "checkpoints": [{"name": n, "path": "random"} for n in ("base", "better", "same", "worse", "single")],
           "tasks": {"linear_cls": [], "knn": []}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    suite = load_suite(tmp_path / "s.yaml")
    values = {"base": [1.0, 2.0, 3.0], "better": [2.0, 4.0, 5.0], "same": [1.5, 1.5, 3.5], "worse": [0.0, 1.0, 1.5], "single": [7.0]}
    protocol = {"better": "paper", "single": "non-standard"}
    for ck in suite.checkpoints:
        for task in suite.tasks:
            for seed, v in enumerate(values[ck.name]):
                write_cell(suite, ck, task, seed, {"protocol": protocol.get(ck.name, "standard"), "dataset": "ImageNet-1K",
                                                   "top1": v if task == "knn" else v + 10})
    write_report(suite)
    means, diffs = (suite.output / "results.tex").read_text().split(r"\end{tabular}")[:2]
    half = 4.302653 * math.sqrt(1 / 3) / math.sqrt(3)  # t(0.975, 2) x sd / sqrt(3); sd of (1, 2, 2) and (1, 1, 1.5)
    assert r"checkpoint & top1 & top1 \\" in means and means.index("{linear}") < means.index("{kNN}")
    assert r"better & 13.67 $\pm$ 1.53\S{} (+1.67) & 3.67 $\pm$ 1.53\S{} (+1.67) \\" in means
    assert r"worse & 10.83 $\pm$ 0.76 (-1.17) & 0.83 $\pm$ 0.76 (-1.17) \\" in means
    assert r"single & 17.00$^\dagger$ (+5.00) & 7.00$^\dagger$ (+5.00) \\" in means
    assert r"base & 12.00 $\pm$ 1.00 & 2.00 $\pm$ 1.00 \\" in means
    assert r"supervised IN-1k (published) & 76.1$^1$ & – \\" in means
    assert r"MoCo v2 200e (published) & 67.5 & – \\" in means
    assert r"SimSiam 200e (base) (published) & 70.0$^2$ & – \\" in means
    assert r"BYOL 200e (published) & 70.6$^2$ & – \\" in means
    assert "% $^1$ supervised end-to-end" in means + diffs and "% $^2$ SimSiam's linear probe" in means + diffs
    lines = {ln.split(" & ")[0]: ln for ln in diffs.splitlines() if " & " in ln}
    better = f"+1.67 [{5 / 3 - half:+.2f}, {5 / 3 + half:+.2f}]"
    assert lines["better"] == rf"better & {better} & {better} \\"
    sd_worse = statistics.stdev([-1.0, -1.0, -1.5])
    w_half = 4.302653 * sd_worse / math.sqrt(3)
    worse = f"-1.17 [{-7 / 6 - w_half:+.2f}, {-7 / 6 + w_half:+.2f}]"
    assert -7 / 6 + w_half < 0 and lines["worse"] == rf"worse & {worse} & {worse} \\"
    assert lines["same"].count("(0 in CI)") == 2 and "(0 in CI)" not in lines["better"] + lines["worse"] + lines["single"]
    assert lines["single"] == r"single & +5.00 (1 seed: no interval) & +5.00 (1 seed: no interval) \\"
    assert "base" not in lines
