"""Every YAML Conveyor takes from others is bounded: size, depth and alias expansion, with a
one-line error that names the file, the line and the bound (issue 14, item 4); the importer's
input and output are what the API server and kubectl accept (item 5)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import yaml

from conveyor.cli.main import main
from conveyor.deploy.errors import RenderError
from conveyor.deploy.render import MAX_TEMPLATES_BYTES, render_templates
from conveyor.gitlab.yamlload import LoadError, load_yaml
from conveyor.yamllimits import MAX_INPUT_BYTES, YAMLTooLarge, check_node


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    return "\n".join(lines) + "\nunit:\n  script: *a9\n"


def test_nested_aliases_are_refused_at_once_with_the_line():
    began = time.monotonic()
    with pytest.raises(LoadError) as e:
        load_yaml(billion_laughs(), ".gitlab-ci.yml")
    assert time.monotonic() - began < 5  # linear in the file, not in its expansion
    assert e.value.line == 7 and "expand to more than 1000000 nodes" in e.value.reason


def test_shared_aliases_within_the_bound_are_fine():
    text = "x: &x [a, b]\n" + "".join(f"j{i}:\n  script: *x\n" for i in range(100))
    assert load_yaml(text, "f")["j99"]["script"] == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a: &a [*a]\n", "an alias refers to a node that contains it"),
        ("a: " + "[" * 150 + "]" * 150 + "\n", "nested"),
        ("a: x\n" + "b: " + "y" * MAX_INPUT_BYTES + "\n", "more than the 2097152 bytes"),
    ],
)
def test_recursive_deep_or_large_files_are_refused(text, words):
    with pytest.raises(LoadError) as e:
        load_yaml(text, "f.yml")
    assert words in e.value.reason and "\n" not in str(e.value)


def test_depth_is_gitlabs_100_levels():
    node = yaml.compose("a: " + "[" * 99 + "]" * 99)
    check_node(node)  # the mapping, then 99 lists: 100 levels
    with pytest.raises(YAMLTooLarge, match="more than 100 levels"):
        check_node(yaml.compose("a: " + "[" * 100 + "]" * 100))


def _files(text: str) -> dict[str, bytes]:
    return {"deploy.yml": text.encode()}


def test_a_repositorys_templates_are_bounded_too():
    # One hostile repository must not take the operator down.
    bomb = billion_laughs().replace("unit:\n  script: *a9", "apiVersion: v1\nkind: ConfigMap")
    with pytest.raises(RenderError, match="expand to more than"):
        render_templates(_files(bomb), {})
    with pytest.raises(RenderError, match="nested more than 100 levels"):
        render_templates(_files("a: " + "[" * 300 + "]" * 300), {})
    big = {f"t{i}.yml": b"#" * (4 * 1024 * 1024) for i in range(5)}
    with pytest.raises(RenderError, match=f"{MAX_TEMPLATES_BYTES} bytes in all"):
        render_templates(big, {})


# --- import-gitlab: input it refuses, output the API server and kubectl accept -------------


def test_a_file_that_is_not_utf8_is_exit_2_with_where(tmp_path, capsys):
    path = tmp_path / ".gitlab-ci.yml"
    path.write_bytes(b"unit:\n  script:\n    - echo \xe9t\xe9\n")
    assert main(["import-gitlab", str(path), "--name", "app"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"{path}:3: not UTF-8 text (byte 0xe9 at offset 27)"


def test_a_name_the_api_server_would_refuse_is_exit_2(tmp_path, capsys):
    path = tmp_path / ".gitlab-ci.yml"
    path.write_text("unit:\n  script: [make]\n")
    assert main(["import-gitlab", str(path), "--name", "My App!"]) == 2
    assert "is not a Kubernetes name" in capsys.readouterr().err


def test_a_bare_y_is_written_quoted_so_that_kubectl_reads_a_string(tmp_path, capsys):
    path = tmp_path / ".gitlab-ci.yml"
    path.write_text("unit:\n  script:\n    - y\n    - n\n    - echo yes\n")
    assert main(["import-gitlab", str(path), "--name", "app"]) == 0
    out = capsys.readouterr().out
    assert '- "y"\n    - "n"\n' in out
    # YAML 1.1 (kubectl's reader) takes bare y and n for booleans; quoted, they are strings.
    assert yaml.safe_load(out)["spec"]["jobs"][0]["script"] == ["y", "n", "echo yes"]


def test_standard_input_is_read_with_dash(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "conveyor.cli.main", "import-gitlab", "-", "--name", "app"],
        input="unit:\n  script: [make]\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(proc.stdout)["metadata"]["name"] == "app"
    proc = subprocess.run(
        [sys.executable, "-m", "conveyor.cli.main", "import-gitlab", "-"],
        input="unit:\n  script: [make]\n",
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "needs --name" in proc.stderr


def test_too_many_jobs_are_refused_before_the_costly_steps(tmp_path, capsys):
    path = tmp_path / ".gitlab-ci.yml"
    path.write_text("".join(f"j{i}:\n  script: [make]\n" for i in range(201)))
    assert main(["import-gitlab", str(path), "--name", "app"]) == 2
    assert "201 jobs: a pipeline has at most 200 jobs" in capsys.readouterr().err


def test_the_help_no_longer_says_parallel_is_dropped(capsys):
    with pytest.raises(SystemExit):
        main(["import-gitlab", "--help"])
    out = capsys.readouterr().out
    assert "parallel and parallel:matrix" in out and "- for standard input" in out
