# lbsgd: the two set-up commands of the README, and their parts.
#   make train   install (if needed), then the main job: 2 ranks on the embedded digits data
#   make test    install (if needed), then the test suite
NP ?= 2
CONFIG ?= configs/digits_resnet.py
PY := .venv/bin/python

.PHONY: install train test
install:
	bash launch/install.sh

train: install
	launch/run.sh -np $(NP) python -m lbsgd.train --config $(CONFIG) --overwrite

test: install
	$(PY) -m pytest
