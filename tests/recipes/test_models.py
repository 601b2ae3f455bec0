"""The machine's native precision, which sets the default dtype of training and local judges."""

import pytest

import recipes.models as models
from recipes.models import fast_bf16


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx2", "fma"}, False),
        ({"avx512f", "avx512bw"}, False),  # AVX-512 without BF16: bfloat16 is emulated
        ({"avx512f", "avx512_bf16"}, True),
        ({"amx_bf16"}, True),
    ],
)
def test_cpu_bf16_is_fast_only_with_native_instructions(monkeypatch, flags, expected):
    monkeypatch.setattr(models, "_cpu_flags", lambda: frozenset(flags))
    assert fast_bf16("cpu") is expected
    assert fast_bf16("mps") is False
