"""Autoregressive density models: exact ``log_prob`` in one pass, sequential sampling."""

from ._mixture import AutoregressiveMixture as AutoregressiveMixture
