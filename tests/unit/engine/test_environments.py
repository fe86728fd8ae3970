"""Which Environment serves a GitLab environment name (engine.environments)."""

from __future__ import annotations

from conveyor.engine.environments import (
    object_name,
    pattern_matches,
    resolve_environment,
    target_namespace,
)
from conveyor.engine.variables.predefined import environment_slug


def env(name: str, *patterns: str) -> dict:
    return {"metadata": {"name": name}, "spec": {"namespace": "x", "names": list(patterns)}}


def test_a_name_is_served_by_name_then_slug_then_pattern():
    review = env("review", "review/*")
    prod = env("prod")
    slugged = env(environment_slug("Staging"))
    found = [prod, review, slugged]
    assert resolve_environment("prod", found) is prod
    # Not a valid object name: the Environment named after its slug serves it.
    assert object_name("Staging") == environment_slug("Staging") != "staging"
    assert resolve_environment("Staging", found) is slugged
    # A family: review/<anything> (slashes too).
    assert resolve_environment("review/feature/login", found) is review
    assert resolve_environment("review", found) is review  # by name
    # Nobody's: a plain environment (no gate, no credentials, no target).
    assert resolve_environment("docs/preview", found) is None


def test_patterns_are_gitlab_scopes():
    assert pattern_matches("review/*", "review/a/b")
    assert pattern_matches("*", "anything")
    assert not pattern_matches("review/*", "reviews/a")
    assert not pattern_matches("review/*", "x/review/a")
    assert pattern_matches("a.b", "a.b") and not pattern_matches("a.b", "axb")


def test_each_review_app_gets_a_namespace_of_its_own():
    slug = environment_slug("review/feature-x")
    assert target_namespace("review-$CI_ENVIRONMENT_SLUG", "review/feature-x") == f"review-{slug}"
    assert target_namespace("r-${CI_ENVIRONMENT_SLUG}", "review/a") == "r-" + environment_slug(
        "review/a"
    )
    assert target_namespace("app", "review/a") == "app"


def test_the_most_specific_pattern_wins():
    catch_all = env("a-anything", "*")
    review = env("z-review", "review/*")
    assert resolve_environment("review/x", [catch_all, review]) is review
    assert resolve_environment("Production", [catch_all, review]) is catch_all
