"""(c) EXL2 at 6.0 bits per weight keeps FP16's greedy choice on at least 85% of 64 positions of real text."""

from __future__ import annotations

from pathlib import Path

from tests.gpu import models

POSITIONS = 64
MIN_AGREEMENT = 0.85


def test_exl2_greedy_choices_agree_with_fp16(hf_model_dir: Path, exl2_model_dir: Path) -> None:
    ids = models.tokenize(hf_model_dir, models.SAMPLE_TEXT)[:POSITIONS]
    assert len(ids) == POSITIONS, f"the sample text has only {len(ids)} tokens"
    choices = {}
    for name, folder in (("fp16", hf_model_dir), ("exl2", exl2_model_dir)):
        model = models.ExLlamaV2Model(folder)
        try:
            choices[name] = model.argmax(ids)
        finally:
            model.close()
    share = models.agreement(choices["fp16"], choices["exl2"])
    print(f"EXL2 6.0bpw agrees with FP16 on {share:.1%} of {POSITIONS} positions")
    assert share >= MIN_AGREEMENT
