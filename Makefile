# Conveyor: developer and CI entry points. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CLUSTER := $(PY) hack/localcluster.py

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## create the virtual environment with Conveyor and its test tools

.PHONY: control-plane
control-plane: ## build etcd, Kubernetes and kwok from the Go module proxy (cached outside the clone)
	bash hack/build-control-plane.sh

.PHONY: node-deps
node-deps: ## install with apt-get (as root) what real nodes, the registry and images need
	bash hack/node-deps.sh

.PHONY: images
images: node-deps ## build the job images of hack/images/ (cached outside the clone)
	bash hack/images/build.sh

.PHONY: operator-image
operator-image: node-deps ## build the operator's image from the Dockerfile (buildah; cached outside the clone)
	bash hack/operator-image.sh $(if $(REGISTRY),--push $(REGISTRY))

.PHONY: cluster-up
cluster-up: venv node-deps ## start the local clusters ci, test and prod; after a crash, what died
	$(CLUSTER) up

.PHONY: cluster-down
cluster-down: venv ## stop the local clusters, exactly the processes cluster-up started (the test workers' too)
	$(CLUSTER) down
	@for d in .cluster-gw*; do [ -d "$$d" ] || continue; n=$${d#.cluster-gw}; \
	  CONVEYOR_CLUSTER_DIR=$$d CONVEYOR_PORT_BASE=$$(( $${CONVEYOR_PORT_BASE:-16400} + 3000 * n )) $(CLUSTER) down; done

.PHONY: cluster-status
cluster-status: venv ## show which local cluster processes run
	$(CLUSTER) status

.PHONY: cluster-reset
cluster-reset: venv ## stop the local clusters and wipe their data: the next cluster-up starts empty
	$(CLUSTER) reset

.PHONY: cluster-stop cluster-start cluster-pause cluster-resume
cluster-stop: venv ## stop one component, etcd's data kept: make cluster-stop COMPONENT=kube-apiserver-ci
	$(CLUSTER) stop $(COMPONENT)

cluster-start: venv ## start one stopped component again: make cluster-start COMPONENT=kube-apiserver-ci
	$(CLUSTER) start $(COMPONENT)

cluster-pause: venv ## freeze one component (SIGSTOP): make cluster-pause COMPONENT=etcd
	$(CLUSTER) pause $(COMPONENT)

cluster-resume: venv ## thaw a paused component (SIGCONT): make cluster-resume COMPONENT=etcd
	$(CLUSTER) resume $(COMPONENT)

.PHONY: lint
lint: venv ## ruff, mypy, the layers contract (import-linter) and hadolint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/hadolint Dockerfile

.PHONY: unit
unit: venv ## unit tests (no cluster)
	$(VENV)/bin/pytest tests/unit

.PHONY: e2e
# The test workers: each has local clusters of its own (tests/e2e/support.py), built from the
# same caches; what every worker's clusters use is built once, before they start side by side.
WORKERS ?= 2
PYTEST_WORKERS = $(if $(filter-out 1,$(WORKERS)),-n $(WORKERS) --dist loadfile)

.PHONY: prebuilt
prebuilt: node-deps control-plane ## the job images, the artifact store and the operator image (cached outside the clone)
	bash hack/images/build.sh >/dev/null
	bash hack/build-versitygw.sh >/dev/null
	bash hack/operator-image.sh >/dev/null

e2e: venv node-deps control-plane prebuilt ## end-to-end tests against the local clusters (started if needed; WORKERS=1 for one set)
	$(VENV)/bin/pytest $(PYTEST_WORKERS) tests/e2e

.PHONY: test
test: venv node-deps control-plane lint prebuilt ## lint, unit and end-to-end tests: what CI runs
	$(VENV)/bin/pytest $(PYTEST_WORKERS) tests/unit tests/e2e

.PHONY: bench
bench: venv control-plane ## benchmark against the local clusters; writes docs/benchmarks.md
	$(PY) bench/run.py
	$(PY) bench/replicas.py
	$(PY) bench/builds.py
	$(PY) bench/artifacts.py
	$(PY) bench/push_to_prod.py

.PHONY: demo
demo: venv control-plane ## the article's pipeline end to end on the local clusters (deploy, approval)
	$(PY) hack/demo.py
