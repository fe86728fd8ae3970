"""Rendering templates: placeholders, Jinja2 sandbox, YAML, the seed's VERSION/HASH rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.deploy import RenderError, deploy_variables, render_templates

ROOT = Path(__file__).resolve().parents[3]
GO_APP = ROOT / "examples" / "go-app" / "templates"
SHA = "0123456789abcdef0123456789abcdef01234567"


def go_app_files() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in GO_APP.iterdir() if p.is_file()}


def cm(name: str, extra: str = "") -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n{extra}"


def render_one(text: str, variables: dict[str, str] | None = None, name: str = "t.yml") -> list:
    return render_templates({name: text.encode()}, variables or {})


# --- the seed's templates -------------------------------------------------------------------


def test_go_app_templates_render_like_the_seeds_sed():
    variables = deploy_variables("master", SHA, None, extra={"APP_FQDN": "go-app.test.domain.com"})
    manifests = render_templates(go_app_files(), variables)
    # Sorted by file name; .placeholder ignored.
    assert [(m["kind"], m["metadata"]["name"]) for m in manifests] == [
        ("HorizontalPodAutoscaler", "go-app"),
        ("Deployment", "go-app"),
        ("Ingress", "go-app"),
        ("ServiceAccount", "go-app"),
        ("ServiceMonitor", "go-app"),
        ("Service", "go-app"),
    ]
    deployment = manifests[1]["spec"]["template"]
    image = deployment["spec"]["containers"][0]["image"]
    assert image == f"registry.example.com/encompass/go-app:master_{SHA}"
    assert deployment["metadata"]["annotations"]["templates-hash"] == SHA
    assert manifests[2]["spec"]["rules"][0]["host"] == "go-app.test.domain.com"
    assert manifests[4]["metadata"]["namespace"] == "monitoring"


def test_hash_without_a_value_becomes_empty_and_stays_constant():
    variables = {"VERSION": "latest", "APP_FQDN": "x.example.com"}
    manifests = render_templates(go_app_files(), variables)
    annotations = manifests[1]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["templates-hash"] == ""


def test_missing_placeholder_names_file_line_and_placeholder():
    variables = deploy_variables("master", SHA, None)  # no APP_FQDN
    with pytest.raises(RenderError) as e:
        render_templates(go_app_files(), variables)
    assert str(e.value) == "ingress.yml:7: placeholder <APP_FQDN> has no value"
    assert (e.value.file, e.value.line) == ("ingress.yml", 7)


def test_only_upper_case_names_are_placeholders():
    out = render_one(cm("a", "data:\n  html: '<b>bold</b> <Foo> <1X> <A-B>'\n"))
    assert out[0]["data"]["html"] == "<b>bold</b> <Foo> <1X> <A-B>"


def test_placeholder_values_with_jinja_syntax_or_newlines_are_refused_unquoted():
    for value in ("feature/{{ 7*7 }}", "a\nkind: Secret", "{% raw %}"):
        with pytest.raises(RenderError) as e:
            render_one(cm("a", "data: {v: '<VERSION>'}\n"), {"VERSION": value})
        assert "t.yml:5:" in str(e.value)
        assert "<VERSION>" in str(e.value)
        assert value not in str(e.value)


def test_placeholders_are_replaced_before_jinja():
    text = cm("a", 'data:\n  latest: \'{{ "yes" if "<VERSION>" == "latest" else "no" }}\'\n')
    assert render_one(text, {"VERSION": "latest"})[0]["data"]["latest"] == "yes"


# --- Jinja2 ---------------------------------------------------------------------------------


def test_jinja_sees_the_variables():
    text = cm(
        "a", "data:\n  fqdn: {{ APP_FQDN | tojson }}\n  n: '{{ range(3) | list | length }}'\n"
    )
    out = render_one(text, {"APP_FQDN": "go.example.com"})
    assert out[0]["data"] == {"fqdn": "go.example.com", "n": "3"}


def test_undefined_name_is_an_error_with_file_and_line():
    with pytest.raises(RenderError) as e:
        render_one(cm("a", "data:\n  x: '{{ APP_FQDM }}'\n"), {"APP_FQDN": "x"}, name="ingress.yml")
    assert str(e.value).startswith("ingress.yml:6: undefined:")
    assert "APP_FQDM" in str(e.value)


def test_undefined_name_in_a_block_reports_its_line():
    text = "{% if true %}\n" + cm("a") + "{% for x in nope %}\n{% endfor %}\n{% endif %}\n"
    with pytest.raises(RenderError) as e:
        render_one(text)
    assert str(e.value).startswith("t.yml:6: undefined:")


@pytest.mark.parametrize(
    "expression",
    [
        "''.__class__",
        "''.__class__.__mro__[1].__subclasses__()",
        "cycler.__init__.__globals__",
        "'a' | attr('__class__')",
        "'{0.__class__}'.format(1)",
        "range.__self__",
    ],
)
def test_the_sandbox_refuses_attribute_tricks(expression: str):
    with pytest.raises(RenderError) as e:
        render_one(cm("a", f"data:\n  x: '{{{{ {expression} }}}}'\n"))
    assert str(e.value).startswith("t.yml:6: ")
    assert "sandbox" in str(e.value) or "undefined" in str(e.value)


def test_the_sandbox_is_immutable():
    text = "{% set d = {} %}{{ d.update({'a': 1}) }}\n" + cm("a")
    with pytest.raises(RenderError, match=r"^t\.yml:1: not allowed in the sandbox"):
        render_one(text)


def test_lipsum_is_not_available():
    with pytest.raises(RenderError, match="undefined"):
        render_one(cm("a", "data: {x: '{{ lipsum(1000) }}'}\n"))


def test_template_syntax_error_has_line():
    with pytest.raises(RenderError, match=r"^t.yml:3: template syntax"):
        render_one("a: 1\nb: 2\nc: {% if %}\n")


def test_include_reaches_nothing():
    with pytest.raises(RenderError, match=r"^t.yml:1: TemplateNotFound"):
        render_templates({"t.yml": b"{% include 'u.yml' %}", "u.yml": b""}, {})


def test_python_errors_in_expressions_are_render_errors():
    with pytest.raises(RenderError, match=r"^t.yml:6: ZeroDivisionError"):
        render_one(cm("a", "data:\n  x: '{{ 1 / 0 }}'\n"))


def test_output_is_capped():
    text = "{% for i in range(100000) %}{% for j in range(100) %}xxxxxxxx{% endfor %}{% endfor %}"
    with pytest.raises(RenderError, match="exceeds"):
        render_one(text)


# --- YAML -----------------------------------------------------------------------------------


def test_multi_document_files_and_list_kind_and_empty_documents():
    text = (
        "---\n# only a comment\n---\n"
        + cm("a")
        + "---\n"
        + cm("b")
        + "---\napiVersion: v1\nkind: List\nitems:\n"
        + "- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}\n"
    )
    files = {"b.yaml": text.encode(), "a.yml": cm("z").encode(), "notes.txt": b"not: [yaml"}
    assert [m["metadata"]["name"] for m in render_templates(files, {})] == ["z", "a", "b", "c"]


def test_invalid_yaml_has_line():
    with pytest.raises(RenderError, match=r"^t.yml:3: invalid YAML"):
        render_one("a: 1\nb: 2\n  c: 3\nd: 4\n")


def test_documents_must_be_objects_with_kind_and_name():
    with pytest.raises(RenderError, match=r"^t.yml:6: a document must be a mapping"):
        render_one(cm("a") + "---\n- 1\n")
    with pytest.raises(RenderError, match=r"^t.yml:1: the document has no kind"):
        render_one("apiVersion: v1\nmetadata: {name: a}\n")
    with pytest.raises(RenderError, match=r"^t.yml:1: the ConfigMap has no metadata.name"):
        render_one("apiVersion: v1\nkind: ConfigMap\n")


def test_yaml_tags_that_build_objects_are_refused():
    with pytest.raises(RenderError, match="invalid YAML"):
        render_one("!!python/object/apply:os.system ['true']\n")


def test_non_utf8_is_an_error():
    with pytest.raises(RenderError, match=r"^t.yml:2: not valid UTF-8"):
        render_templates({"t.yml": b"a: 1\nb: \xff\n"}, {})


# --- deploy_variables: the seed's rules -----------------------------------------------------


@pytest.mark.parametrize(
    ("changed", "version", "hash_"),
    [
        (frozenset({"src/server.go"}), f"master_{SHA}", ""),
        (frozenset({"templates/deployment.yml"}), "latest", SHA),
        (frozenset({"src/Dockerfile", "templates/svc.yml"}), f"master_{SHA}", SHA),
        (frozenset({"README.md"}), "latest", ""),
        (frozenset(), "latest", ""),
        (None, f"master_{SHA}", SHA),  # unknown: treated as changed
        (frozenset({"docs/src/x.md", "mytemplates/a.yml"}), "latest", ""),  # prefixes, not grep
    ],
)
def test_version_and_hash_follow_the_changed_paths(changed, version, hash_):
    variables = deploy_variables("master", SHA, changed)
    assert (variables["VERSION"], variables["HASH"]) == (version, hash_)
    assert variables["CI_COMMIT_SHA"] == SHA
    assert variables["CI_COMMIT_REF_NAME"] == "master"
    assert variables["CI_COMMIT_SHORT_SHA"] == SHA[:8]


def test_custom_paths_and_extra_variables():
    variables = deploy_variables(
        "main",
        SHA,
        frozenset({"app/src/main.go"}),
        version_paths=("app/src/",),
        hash_paths=("app/templates/",),
        extra={"APP_FQDN": "go.example.com", "KUBE_NAMESPACE": "go-app"},
    )
    assert variables["VERSION"] == f"main_{SHA}"
    assert variables["HASH"] == ""
    assert variables["APP_FQDN"] == "go.example.com"
    assert variables["KUBE_NAMESPACE"] == "go-app"


def test_extra_wins_so_an_environment_can_pin_the_version():
    variables = deploy_variables("main", SHA, None, extra={"VERSION": "1.2.3"})
    assert variables["VERSION"] == "1.2.3"
