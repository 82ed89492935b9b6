"""The report's known-truth section on fabricated runs: pairing by rule, the contrast on
the images both models classify correctly, verification and chance rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from faithbench.report.merge import Group
from faithbench.report.runs import RunInfo
from faithbench.report.truth import build_truth, tables


def group(model: str, method: str, rule: str, frame: pd.DataFrame, seed: str = "0") -> Group:
    params = {"metrics": "['cue_mass']", "dataset.rule": rule, "dataset.seed": seed,
              "dataset.size": "64", "dataset.max_distractors": "3",
              "dataset.min_used_flip": "0.9", "dataset.max_other_flip": "0.05"}
    tags = {"model": model, "method": method, "dataset": "cues"}
    g = Group(f"{model}-{method}-{seed}", [RunInfo(f"r-{model}-{method}", "1", 0, tags, params)])
    g.label, g.frame = method, frame
    return g


def frame(used: list[float], other: list[float], correct: list[bool] | None = None,
          flips: tuple[float, float] = (1.0, 0.0)) -> pd.DataFrame:
    n = len(used)
    return pd.DataFrame({"id": [f"cues/0/{i}" for i in range(n)], "image_id": [f"cues/0/{i}" for i in range(n)],
                         "index": range(n), "target": 0, "pred": 0,
                         "correct": correct if correct is not None else [True] * n, "status": "ok",
                         "cue_mass": used, "cue_mass_other": other, "cue_mass_chance": 0.05,
                         "cue_verification_used": flips[0], "cue_verification_other": flips[1]})


def test_contrast_pairs_the_two_rules_per_method_on_correct_images():
    gs = [group("cue_shape_cnn", "good", "shape", frame([0.6, 0.8, 0.9], [0.1, 0.0, 0.5])),
          group("cue_marker_cnn", "good", "marker", frame([0.3, 0.5, 0.0], [0.2, 0.1, 0.0],
                                                          correct=[True, True, False])),
          group("cue_shape_cnn", "same", "shape", frame([0.5, 0.2, 0.4], [0.3, 0.1, 0.2])),
          group("cue_marker_cnn", "same", "marker", frame([0.3, 0.1, 0.2], [0.5, 0.2, 0.4])),
          group("cue_shape_cnn", "lonely", "shape", frame([0.5], [0.1]))]
    problems: list[str] = []
    tr = build_truth(gs, problems, n_resamples=200)
    b = tr.board.set_index("method")
    # image 2 is left out (the marker model is wrong there)
    want = np.mean([((0.6 - 0.2) + (0.3 - 0.1)) / 2, ((0.8 - 0.1) + (0.5 - 0.0)) / 2])
    assert b.loc["good", "contrast"] == pytest.approx(want) and b.loc["good", "n_pairs"] == 2
    assert b.loc["same", "contrast"] == 0.0  # the same map whatever the model
    assert b.loc["good", "cue_mass (shape model)"] == pytest.approx(np.mean([0.6, 0.8, 0.9]))
    assert list(b.index[:2]) == ["good", "same"]  # best contrast first
    assert np.isnan(b.loc["lonely", "contrast"]) and any("lonely" in p for p in problems)
    v = tr.verification.set_index("rule")
    assert v.loc["shape", "used_cue_flip"] == 1.0 and v.loc["marker", "max_other_flip"] == 0.05
    assert tr.chance == pytest.approx({"cue_mass (shape model)": 0.05, "cue_mass (marker model)": 0.05})
    t = tables(tr, 3, "md")
    assert len(t) == 2 and any(r[0] == "(chance)" for r in list(t.values())[1][1])


def test_runs_of_other_images_or_tracks_are_not_paired():
    a = group("cue_shape_cnn", "m", "shape", frame([0.5], [0.1]), seed="0")
    b = group("cue_marker_cnn", "m", "marker", frame([0.5], [0.1]), seed="1")
    problems: list[str] = []
    tr = build_truth([a, b], problems)
    assert tr is not None and "contrast" not in tr.board.columns and len(tr.board) == 2
    assert len(problems) == 2
    plain = group("shapes_cnn", "m", "", frame([0.5], [0.1]))
    assert build_truth([plain], []) is None
