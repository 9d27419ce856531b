"""Install lbsgd: `pip install -e .` (metadata lives in setup.cfg)."""
from setuptools import setup

setup()
