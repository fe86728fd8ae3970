"""The artifact store: S3-compatible object storage (SigV4 signer, client, per-job plans)."""
