"""What a testbed run measured, where a simulator result holds its calibration."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MeasuredRates:
    """Stands where a simulator result holds its calibration: what the testbed measured."""

    init_s: float
    warmup_s: float
    prefill_tokens_per_s: dict
    decode_step_ms: dict
    attn_impl: str  # the prefill attention kernel the model was built with (model.choose_attn_impl)

    def as_dict(self) -> dict:
        return {
            "init_s": self.init_s,
            "warmup_s": self.warmup_s,
            "attn_impl": self.attn_impl,
            "prefill_tokens_per_s": self.prefill_tokens_per_s,
            "decode_step_ms": self.decode_step_ms,
        }
