# Thin aliases for dev.py, which needs nothing but Python 3.11+.
PYTHON ?= python3

.PHONY: demo test dev faults bench lock
demo:
	$(PYTHON) dev.py demo
test:
	$(PYTHON) dev.py test
dev:
	$(PYTHON) dev.py dev
faults:
	$(PYTHON) dev.py faults
bench:
	$(PYTHON) dev.py bench
lock:
	$(PYTHON) dev.py lock
