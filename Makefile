# lbsgd: the two set-up commands of the README, and their parts.
#   make train   install (if needed), then the main job: 2 ranks on the embedded digits data
#   make test    install (if needed, with the notebook tools), then the test suite
#   make notebook  install the notebook tools (if needed), then JupyterLab on notebooks/
NP ?= 2
CONFIG ?= configs/digits_resnet.py
PY := .venv/bin/python

.PHONY: install install-notebook train test notebook
install:
	bash launch/install.sh

install-notebook:
	bash launch/install.sh --notebook

train: install
	launch/run.sh -np $(NP) python -m lbsgd.train --config $(CONFIG) --overwrite

test: install-notebook
	$(PY) -m pytest

notebook: install-notebook
	.venv/bin/jupyter lab --notebook-dir=notebooks $$( [ "$$(id -u)" -eq 0 ] && echo --allow-root )
