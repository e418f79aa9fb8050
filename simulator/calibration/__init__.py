"""Calibration: real PyTorch runs, measured latency profiles, and the simulator checked against them.

Needs the torch extra: pip install -e '.[torch]'.
"""
