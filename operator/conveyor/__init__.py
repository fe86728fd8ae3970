"""Conveyor: GitLab-CI-style CI/CD pipelines as Kubernetes custom resources."""

__version__ = "0.1.0"
