"""moeopt: the cheapest serverless deployment of Mixture-of-Experts inference, with proof."""

from __future__ import annotations

__version__ = "0.1.0"
