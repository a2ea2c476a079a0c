"""MPNet's masked and permuted pretraining, sample side (Song et al. 2020, section 2; microsoft/MPNet
``make_query_and_content_mask``).

A sequence of L positions is permuted so that the ``pred`` predicted positions come last. The input
is three blocks: the L permuted tokens (original ids: the content stream), then ``pred`` corrupted
copies of the predicted tokens ([M] 80%, random 10%, unchanged 10%) at the predicted positions (the
content stream's mask tokens), then the same ``pred`` again (the query stream, whose outputs are
predicted). Keys are the first two blocks only. Query row k sees the non-predicted tokens, the
predicted tokens before it in the order, and the mask tokens from its own position on: L distinct
positions (position compensation), none of them its own token.
"""

from __future__ import annotations

import numpy as np


def two_stream_visibility(length: int, pred: int, used: int | None = None) -> np.ndarray:
    """[L + 2 pred, L + 2 pred] bool, True = row may see column, for the three-block layout with
    ``pred`` predicted tokens at the end of the L content positions (MPNet's content mask above
    its query mask; no row sees the query block). ``used`` < pred: a short sequence with only
    that many predicted tokens; the unused slots of both appended blocks see and are seen by
    nothing."""
    used = pred if used is None else used
    if used < pred:
        small = two_stream_visibility(length, used)
        rows = np.concatenate([np.arange(length + used), length + pred + np.arange(used)])
        see = np.zeros((length + 2 * pred,) * 2, dtype=bool)
        see[np.ix_(rows, rows)] = small
        return see
    a, b = length, pred
    size = a + 2 * b
    see = np.zeros((size, size), dtype=bool)
    see[:, :a - b] = True  # the non-predicted tokens: everybody
    k = np.arange(b)
    earlier_or_self = k[None, :] <= k[:, None]  # [row k, column j]: j <= k
    # Content rows: non-predicted rows and the mask-token rows see every mask token, no
    # predicted token; predicted row k sees predicted j <= k and mask tokens j > k.
    see[:a - b, a:a + b] = True
    see[a:a + b, a:a + b] = True
    see[a - b:a, a - b:a] = earlier_or_self
    see[a - b:a, a:a + b] = ~earlier_or_self
    # Query row k: predicted j < k and mask tokens j >= k.
    see[a + b:, a - b:a] = earlier_or_self & ~np.eye(b, dtype=bool)
    see[a + b:, a:a + b] = ~(earlier_or_self & ~np.eye(b, dtype=bool))
    return see


def predicted_count(length: int, probability: float) -> int:
    """MPNet's fixed number of predicted tokens per sequence: round(probability * L)."""
    return max(1, int(round(probability * length)))
