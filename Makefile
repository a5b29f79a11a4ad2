# The two commands a newcomer needs:
#   make report   set up, find the data, run the sweeps (reusing finished runs), execute every
#                 notebook headless and export the HTML report        (ARGS=--rerun to retrain all)
#   make test     set up and run the test suite (notebooks in quick mode included)
VENV   ?= .venv
PY     := $(VENV)/bin/python
DEBIAN_DATA := /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz

.PHONY: report quick test bench data setup system clean-quick

setup: $(VENV)/.installed $(VENV)/etc/jupyter/jupyter_nbconvert_config.json

# plain `jupyter nbconvert --execute` talks to its kernel over a local socket file instead of TCP, so
# the kernel does not warn about unencrypted TCP on every run
$(VENV)/etc/jupyter/jupyter_nbconvert_config.json: $(VENV)/.installed
	mkdir -p $(dir $@)
	echo '{"KernelManager": {"transport": "ipc"}}' > $@

$(VENV)/.installed: requirements.txt pyproject.toml
	@$(MAKE) --no-print-directory system
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# System packages a fresh Debian may lack, installed when we are root: python3-venv (for the
# venv), g++ (torch.compile builds the compiled update steps with it; without it they run
# eagerly after a warning and their tests are skipped), postgresql (the engine's tests start a
# throwaway server from its binaries; without them those tests skip and say why) and chromium
# (tests/test_browser.py opens the rendered report headless; without it that test skips).
system:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		need=""; \
		python3 -c 'import ensurepip, venv' 2>/dev/null || need="$$need python3-venv"; \
		command -v g++ >/dev/null || need="$$need g++"; \
		ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need="$$need postgresql"; \
		[ -x /usr/bin/chromium ] || need="$$need chromium"; \
		if [ -n "$$need" ]; then echo "Installing$$need ..."; \
			apt-get update -qq && apt-get install -y -qq $$need; fi; \
	fi

# Fashion-MNIST: $FMNIST_DIR, else Debian's package (installed here when we are root), else
# torchvision's download. data.py says what to do when none of them works.
data:
	@if [ -z "$$FMNIST_DIR" ] && [ ! -f $(DEBIAN_DATA) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian's dataset-fashion-mnist ..."; \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	fi

report: setup data
	$(PY) -m optreport.report $(ARGS)

# two notebooks at a time, each training in its own kernel: on a 2-core machine the quick report's
# short runs cost less CPU that way than with worker processes (the tests' quick report does the same)
quick: setup data
	$(PY) -m optreport.report --quick --jobs 2 --workers 1 $(ARGS)

test: setup system data
	$(PY) -m ruff check .
	$(PY) -m pytest -q $(ARGS)

bench: setup data
	$(PY) benchmarks/bench_throughput.py --csv results/bench_throughput.csv
	$(PY) benchmarks/bench_throughput.py --stack 1 --csv results/bench_throughput_alone.csv
	$(PY) benchmarks/bench_throughput.py --stack 2 --csv results/bench_throughput_stack2.csv
	$(PY) benchmarks/bench_throughput.py --stack 3 --csv results/bench_throughput_stack3.csv
	$(PY) -m optreport.report --only 04 --measure
	$(PY) benchmarks/bench_optimizers.py
	$(PY) benchmarks/bench_trainer.py
	$(PY) benchmarks/bench_fastpath.py
	$(PY) benchmarks/bench_stacking.py

clean-quick:
	rm -rf build/quick
