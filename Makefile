# Glacier Mapper: `make demo` and `make test` set everything up themselves (Debian 12).
SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help setup test demo styles clean

help:
	@echo "make setup  - apt packages, venv, plugin dependencies, plugin installed in the QGIS profile"
	@echo "make demo   - set up, then run the pipeline on the synthetic region (demo_output/)"
	@echo "make test   - set up, then run the test suite"

setup:
	@bash scripts/setup.sh

test: setup
	@bash scripts/test.sh

demo: setup
	@source scripts/env.sh && "$$VENV/bin/python" scripts/demo.py

styles: setup
	@source scripts/env.sh && "$$VENV/bin/python" scripts/make_styles.py

clean:
	rm -rf demo_output .pytest_cache
