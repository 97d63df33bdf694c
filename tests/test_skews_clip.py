"""The fast readers' clip: numpy's own clip ufunc, found through the public ``__array_ufunc__``
protocol, bit-identical to ``np.clip``."""

from __future__ import annotations

import numpy as np

from sim2real.skews import readers


def test_clip_into_is_the_ufunc_behind_ndarray_clip():
    assert isinstance(readers.clip_into, np.ufunc)
    values = np.array([-np.inf, -12.0, -10.0, -0.0, 3.5, 10.0, 1e300, np.nan])
    low, high = np.full(values.shape, -10.0), np.full(values.shape, 10.0)
    out = np.empty_like(values)
    readers.clip_into(values, low, high, out)
    assert out.tobytes() == np.clip(values, low, high).tobytes()


def test_the_fallback_clips_alike():
    values = np.array([-12.0, -0.0, 3.5, 11.0, np.nan])
    low, high = np.full(values.shape, -10.0), np.full(values.shape, 10.0)
    out = np.empty_like(values)
    readers._clip(values, low, high, out)
    assert out.tobytes() == np.clip(values, low, high).tobytes()
