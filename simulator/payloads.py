"""Sizes of the messages strategies send over links, in bytes of payload (the link adds its header).

One function per kind of payload, each a closed form of the model's shape:

  token_ids(n)                        = 4 n                    (int32 token ids)
  ids_with_probs(n)                   = 8 n                    (id and a float32 probability)
  full_distributions(n, vocab, dtype) = n (4 + vocab x dtype)  (id and the whole distribution)
  top_k_probs(n, k)                   = n k (4 + 2)            (k ids with float16 probabilities)
  hidden_states(tokens, hidden, dtype) = tokens x hidden x dtype (activations between stages)
  step_result()                       = 8                      (accepted count and the target's token)
"""

from __future__ import annotations

TOKEN_ID_BYTES = 4  # int32 token id
PROB_BYTES = 4  # float32 probability (ids_with_probs)
TOP_K_PROB_BYTES = 2  # float16 probability (top-k entries)
RESULT_BYTES = 2 * TOKEN_ID_BYTES  # accepted count and the target's next token


def token_ids(n: int) -> int:
    """n token ids."""
    return n * TOKEN_ID_BYTES


def ids_with_probs(n: int) -> int:
    """n token ids, each with the probability the drafter gave it."""
    return n * (TOKEN_ID_BYTES + PROB_BYTES)


def full_distributions(n: int, vocab: int, dtype_bytes: int) -> int:
    """n token ids, each with the drafter's whole distribution over the vocabulary."""
    return n * (TOKEN_ID_BYTES + vocab * dtype_bytes)


def top_k_probs(positions: int, k: int) -> int:
    """The k most likely tokens per position: k x (4 B id + 2 B probability) each."""
    return positions * k * (TOKEN_ID_BYTES + TOP_K_PROB_BYTES)


def hidden_states(tokens: int, hidden: int, dtype_bytes: int) -> int:
    """Activations of `tokens` positions handed from one pipeline stage to the next."""
    return tokens * hidden * dtype_bytes


def step_result() -> int:
    """What a verifier sends back per step: the accepted count and its own next token."""
    return RESULT_BYTES


def per_drafted_token(kind: str, vocab: int, dtype_bytes: int) -> int:
    """Bytes per drafted token for a `draft_payload` kind: ids, ids_probs or full_dist."""
    if kind == "ids":
        return token_ids(1)
    if kind == "ids_probs":
        return ids_with_probs(1)
    if kind == "full_dist":
        return full_distributions(1, vocab, dtype_bytes)
    raise ValueError(f"unknown draft payload {kind!r}")
