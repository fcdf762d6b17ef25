"""Shared figure helpers of the bench scripts (stdlib only)."""


def quantile(values, q):
    """The q-quantile (0 <= q <= 1) of values, linearly interpolated; 0.0 when empty."""
    s = sorted(values)
    if not s:
        return 0.0
    k = q * (len(s) - 1)
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)
