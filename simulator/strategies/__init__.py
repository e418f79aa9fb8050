"""Execution strategies, one module each: how a request's tokens are produced.

A strategy is built from its scenario spec and the engine's World, and serves one request at a
time as a SimPy process body (`serve(record)`). It never computes a latency itself: it asks the
device's ForwardTime tables and the links.
"""

from .autoregressive import Autoregressive
from .batched import Batched
from .federated import Federated
from .pearl import Pearl
from .pipeline import PipeInfer, Pipeline
from .shared_verifier import SharedVerifier
from .speculative import Speculative
from .self_speculative import SelfSpeculative
from .staged import Staged
from .tree import Tree

STRATEGIES = {"autoregressive": Autoregressive, "speculative": Speculative, "shared_verifier": SharedVerifier,
              "pearl": Pearl, "federated": Federated,
              "tree": Tree, "self_speculative": SelfSpeculative, "staged": Staged,
              "pipeline": Pipeline, "pipeinfer": PipeInfer, "batched": Batched}
