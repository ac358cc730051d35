# Thin aliases for dev.py, which needs nothing but Python 3.11+.
PYTHON ?= python3

.PHONY: demo test dev lock
demo:
	$(PYTHON) dev.py demo
test:
	$(PYTHON) dev.py test
dev:
	$(PYTHON) dev.py dev
lock:
	$(PYTHON) dev.py lock
