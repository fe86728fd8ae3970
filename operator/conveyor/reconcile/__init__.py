"""The operator's use-case layer: turns watch events into reconcile passes over the pure engine."""
