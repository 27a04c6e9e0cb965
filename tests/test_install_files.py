"""The install files, the README and CI agree with each other."""
import re

from autograder import paths

CONDA_NAMES = {"pytorch": "torch"}


def _requirements() -> dict[str, str]:
    pins = {}
    for line in (paths.REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def _conda() -> dict[str, str]:
    pins = {}
    for line in (paths.REPO / "environment.yml").read_text().splitlines():
        m = re.match(r"^\s+-\s+([A-Za-z0-9_.-]+)=([0-9][^\s]*)\s*$", line)
        if m and m.group(1) != "python":
            pins[CONDA_NAMES.get(m.group(1), m.group(1)).lower()] = m.group(2)
    return pins


def test_conda_and_pip_name_the_same_packages_and_versions():
    """Do environment.yml and requirements.txt install the same packages at the same versions?"""
    assert _conda() == _requirements()


def test_torch_is_pinned_to_the_cpu_build_on_disk():
    """Is torch pinned to 2.13.0 everywhere (anything else downloads a multi-GB CUDA build)?"""
    assert _requirements()["torch"] == "2.13.0"
    constraints = (paths.REPO / "constraints.txt").read_text()
    assert re.search(r"^torch==2\.13\.0$", constraints, re.MULTILINE)


def test_constraints_cover_every_requirement():
    """Does the lock file pin every package requirements.txt names, at the same version?"""
    lock = dict(line.lower().split("==") for line in (paths.REPO / "constraints.txt").read_text().split()
                if "==" in line)
    for name, version in _requirements().items():
        assert lock.get(name) == version, name


def test_ci_runs_the_readme_test_command():
    """Does .ci/run call the very command the README gives for the tests, and the README the demo's?"""
    readme = (paths.REPO / "README.md").read_text()
    ci = (paths.REPO / ".ci" / "run").read_text()
    assert "make test" in readme and "make demo" in readme
    assert re.search(r"^make test$", ci, re.MULTILINE)


def test_makefile_targets_create_the_environment():
    """Do `make demo` and `make test` both depend on the step that creates .venv and installs?"""
    makefile = (paths.REPO / "Makefile").read_text()
    for target in ("demo", "test", "lab"):
        assert re.search(rf"^{target}: \$\(STAMP\)", makefile, re.MULTILINE), target
    assert "-m venv" in makefile and "-r requirements.txt" in makefile and "-e ." in makefile


def test_pyproject_declares_the_pinned_dependencies():
    """Does `pip install .` (a grading worker) ask for the very versions requirements.txt pins, torch 2.13.0
    included, with the Dask path and the tests as extras?"""
    import tomllib
    project = tomllib.loads((paths.REPO / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["dask"],
                *project["optional-dependencies"]["test"]]
    pins = dict(dep.lower().split("==") for dep in declared)
    assert all("==" in dep for dep in declared), declared
    assert pins["torch"] == "2.13.0"
    assert pins == _requirements()
    assert {"dask", "distributed"} <= {d.split("==")[0] for d in project["optional-dependencies"]["dask"]}
