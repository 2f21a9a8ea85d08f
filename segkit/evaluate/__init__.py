"""Evaluation: per case x class Dice, IoU, HD95, ASSD and NSD on reassembled volumes (``run``).

Importing this package does not import TensorFlow.
"""

from __future__ import annotations
