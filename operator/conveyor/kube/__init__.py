"""Pure builders of Kubernetes objects (and readers of their status) for Conveyor's jobs."""
