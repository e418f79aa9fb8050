"""Model architectures: the presets users name in scenarios, and the sizes derived from them.

Everything the simulator needs to know about a model that is not a latency (weights and
KV-cache bytes, FLOPs of a forward pass, bytes of a hidden state) comes from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Architecture:
    """A Llama-family decoder: `layers` blocks of attention (grouped-query when kv_heads < heads)
    and a gated MLP, untied input embedding and LM head unless `tied_embeddings`.

    `dtype_bytes` is the element size of activations and the KV cache; `weight_bits`, when set,
    is the stored size of one weight (quantised formats: 4.5 for Q4_K), else weights take
    `dtype_bytes` as well."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int = 32000
    dtype_bytes: int = 2
    tied_embeddings: bool = False
    weight_bits: float | None = None  # bits per stored weight; None: 8 x dtype_bytes
    head_size: int | None = None  # elements per attention head; None: hidden // heads (a shard keeps its model's)

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads if self.head_size is None else self.head_size

    @property
    def q_dim(self) -> int:
        """Width of the query (and attention output) projection: hidden, or heads x head_size for a shard."""
        return self.hidden if self.head_size is None else self.heads * self.head_size

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def layer_params(self) -> int:
        attention = self.hidden * (2 * self.q_dim + 2 * self.kv_dim)  # q, o, k, v projections
        mlp = 3 * self.hidden * self.ffn  # gate, up, down
        return attention + mlp + 2 * self.hidden  # + two RMSNorm weights

    def matmul_params(self) -> int:
        """Parameters touched by matrix multiplies in one forward pass (blocks + LM head)."""
        return self.layers * self.layer_params() + self.vocab * self.hidden

    def params(self) -> int:
        embeddings = 0 if self.tied_embeddings else self.vocab * self.hidden
        return self.matmul_params() + embeddings + self.hidden  # + final norm

    def _stored(self, params: int) -> int | float:
        """Bytes `params` weights take: params x dtype_bytes, or params x weight_bits / 8."""
        return params * self.dtype_bytes if self.weight_bits is None else params * self.weight_bits / 8

    def weight_bytes(self) -> int:
        """Bytes of all weights in memory (rounded up to a whole byte when quantised)."""
        return math.ceil(self._stored(self.params()))

    def matmul_weight_bytes(self) -> int | float:
        """Bytes of weights one forward pass reads (the matmul weights: blocks + LM head)."""
        return self._stored(self.matmul_params())

    def kv_bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_dim * self.dtype_bytes

    def hidden_state_bytes(self, tokens: int) -> int:
        return tokens * self.hidden * self.dtype_bytes

    def shard(self, n: int) -> Architecture:
        """What one of n GPUs holds and computes under Megatron-style tensor parallelism: its share of
        the attention heads (key/value heads replicated where there are fewer than n), of the MLP and of
        the vocabulary (the LM head split by vocabulary, as the embedding); hidden size, layers and the
        norms whole. n = 1 is the model itself."""
        if n == 1:
            return self
        if self.heads % n or (self.kv_heads % n and n % self.kv_heads):
            raise ValueError(f"{n}-way tensor parallelism needs heads ({self.heads}) divisible by {n}, and kv_heads "
                             f"({self.kv_heads}) divisible by {n} or dividing it")
        return replace(self, heads=self.heads // n, kv_heads=max(1, self.kv_heads // n), ffn=-(-self.ffn // n),
                       vocab=-(-self.vocab // n), head_size=self.head_dim)


def split_layers(layers: int, n: int) -> list[int]:
    """Decoder blocks per stage of a model split by layers into n pipeline stages: an even split, the
    first layers % n stages one more."""
    return [layers // n + (1 if i < layers % n else 0) for i in range(n)]


def named(name: str) -> Architecture:
    """A preset by name, or one GPU's shard of it as `<preset>.tp<N>` (the name of a measured shard
    grid); KeyError for an unknown preset, ValueError for a shard the preset cannot be split into."""
    preset, _, tp = name.partition(".tp")
    if not tp:
        return PRESETS[name]
    if not tp.isdigit() or int(tp) < 1:
        raise ValueError(f"{name!r}: the shard's tensor-parallel degree must be a positive integer")
    return PRESETS[preset].shard(int(tp))


PRESETS: dict[str, Architecture] = {
    "llama-68m": Architecture(layers=2, hidden=768, heads=12, kv_heads=12, ffn=3072),
    "llama-160m": Architecture(layers=12, hidden=768, heads=12, kv_heads=12, ffn=3072),
    "tinyllama-1.1b": Architecture(layers=22, hidden=2048, heads=32, kv_heads=4, ffn=5632),
    "llama2-7b": Architecture(layers=32, hidden=4096, heads=32, kv_heads=32, ffn=11008),
    "llama2-13b": Architecture(layers=40, hidden=5120, heads=40, kv_heads=40, ffn=13824),
    "llama2-70b": Architecture(layers=80, hidden=8192, heads=64, kv_heads=8, ffn=28672),
    "llama3.2-1b": Architecture(
        layers=16, hidden=2048, heads=32, kv_heads=8, ffn=8192, vocab=128256, tied_embeddings=True
    ),
    "llama3.2-3b": Architecture(
        layers=28, hidden=3072, heads=24, kv_heads=8, ffn=8192, vocab=128256, tied_embeddings=True
    ),
    "llama3-8b": Architecture(layers=32, hidden=4096, heads=32, kv_heads=8, ffn=14336, vocab=128256),
    "llama3-70b": Architecture(layers=80, hidden=8192, heads=64, kv_heads=8, ffn=28672, vocab=128256),
}


def resolve(preset: str | None, **overrides) -> Architecture:
    """A preset with some fields replaced, or a custom architecture from the fields alone."""
    fields = {k: v for k, v in overrides.items() if v is not None}
    if preset is None:
        return Architecture(**fields)
    return replace(PRESETS[preset], **fields)
