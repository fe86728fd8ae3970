"""Prometheus metrics of the operator."""

from conveyor.metrics.registry import OperatorMetrics, metrics_app

__all__ = ["OperatorMetrics", "metrics_app"]
