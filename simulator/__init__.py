"""specsim: a discrete-event performance simulator for speculative decoding of LLMs."""

__version__ = "0.1.0"
