"""The Hugging Face fixtures made by tests/reference/make_hf_fixtures.py (checkpoints plus
transformers' outputs), for the tests/model/test_hf_*.py tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parents[1] / "reference" / "fixtures"
NAMES = ("v3", "v3_fp8", "v2_lite", "v2_group")
DSA_NAMES = ("v32", "v32_fp8")  # DeepseekV32ForCausalLM (tests/model/test_hf_dsa.py)


def path(name: str) -> Path:
    return FIXTURES / name


def config_json(name: str) -> dict:
    return json.loads((FIXTURES / name / "config.json").read_text())


def reference(name: str) -> dict:
    with np.load(FIXTURES / name / "reference.npz") as z:
        return {k: z[k] for k in z.files}
