"""Seeded, order-free randomness and the small array helpers the market generator is built from.

Counter-based hashing (splitmix64) gives noise that depends only on its key, never on what else was
computed: the market's keyword noise and titles, the Keepa encoder's change minutes, and the fault
draws of the server all use it, so a value never depends on which ASINs or dates a caller asked for.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MASK64 = (1 << 64) - 1


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijection on uint64 with good avalanche."""
    x = np.asarray(x, dtype=np.uint64).copy()
    x += np.uint64(0x9E3779B97F4A7C15)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser over an array (wrapping uint64 arithmetic is the point: no warnings)."""
    with np.errstate(over="ignore"):
        return _mix64(x)


def hash64(*keys: Any) -> np.ndarray:
    """Hash broadcastable integer keys into uint64."""
    arrays = np.broadcast_arrays(*[np.asarray(k).astype(np.int64).astype(np.uint64) for k in keys])
    h = np.zeros(arrays[0].shape, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for a in arrays:
            h = _mix64(h ^ a)
    return h


def hash_uniform(*keys: Any) -> np.ndarray:
    """Uniforms in [0, 1) from broadcastable integer keys: the same keys always give the same draw."""
    return (hash64(*keys) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def hash_normal(*keys: Any) -> np.ndarray:
    """Standard normal via Box-Muller on two hashed uniforms."""
    u1 = hash_uniform(*keys, 1)
    u2 = hash_uniform(*keys, 2)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def _splitmix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def uniform(*keys: int) -> float:
    """A uniform in [0, 1) from integer keys (pure Python, for per-request draws)."""
    h = 0
    for k in keys:
        h = _splitmix(h ^ (k & MASK64))
    return (h >> 11) / float(1 << 53)


_B36 = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


def base36(values: np.ndarray, width: int) -> np.ndarray:
    """Fixed-width uppercase base-36 strings of uint64 values (vectorised)."""
    v = np.asarray(values, dtype=np.uint64).copy()
    chars = np.empty((v.size, width), dtype="<U1")
    for pos in range(width - 1, -1, -1):
        chars[:, pos] = _B36[(v % np.uint64(36)).astype(np.int64)]
        v //= np.uint64(36)
    return chars.view(f"<U{width}").reshape(-1)


def logistic01(x: np.ndarray, steep: np.ndarray) -> np.ndarray:
    """A logistic ramp rescaled to go exactly from 0 at x=0 to 1 at x=1 (0 before, 1 after)."""
    lo = 1.0 / (1.0 + np.exp(steep * 0.5))
    hi = 1.0 / (1.0 + np.exp(-steep * 0.5))
    s = 1.0 / (1.0 + np.exp(-steep * (np.clip(x, 0.0, 1.0) - 0.5)))
    return (s - lo) / (hi - lo)


def step_matrix(days: np.ndarray, values: np.ndarray, horizon: int) -> np.ndarray:
    """Rows of ``values`` switched on from ``days`` onwards: (len(days), horizon) float32."""
    t = np.arange(horizon, dtype=np.int32)
    return (t[None, :] >= days[:, None]).astype(np.float32) * values[:, None].astype(np.float32)


def episodes(
    starts: np.ndarray, lengths: np.ndarray, depth: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Turn episode start flags (n, T) into an "active" mask and the active episode's depth.

    Uses running maxima instead of a Python loop: the end of the latest episode started so far
    decides whether day t is inside one; the latest start's depth is carried forward.
    """
    n, horizon = starts.shape
    t = np.arange(horizon, dtype=np.int32)
    rows, cols = np.nonzero(starts)
    end = np.full((n, horizon), -1, dtype=np.int32)
    end[rows, cols] = cols + lengths
    active = np.maximum.accumulate(end, axis=1) > t[None, :]
    if depth is None:
        return active, np.zeros((0, 0), dtype=np.float32)
    return active, np.where(active, carry(starts, depth.astype(np.float32)), np.float32(0.0))


def carry(starts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Carry each start's value forward until the next start in the row (0 before the first one).

    ``values`` holds one value per True cell of ``starts`` in row-major order.
    """
    n, horizon = starts.shape
    rows, cols = np.nonzero(starts)
    last = np.zeros((n, horizon), dtype=np.int32)
    last[rows, cols] = cols
    np.maximum.accumulate(last, axis=1, out=last)
    at = np.zeros((n, horizon), dtype=values.dtype)
    at[rows, cols] = values
    carried = np.take_along_axis(at, last, axis=1)
    carried[~np.maximum.accumulate(starts, axis=1)] = 0
    return carried
