"""GitLab CI compatibility: rule evaluation (pure) and `.gitlab-ci.yml` import."""
