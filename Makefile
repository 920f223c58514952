# The two commands a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run demo test lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the project's metadata changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench
	$(BIN)/mypy --strict src/

test: lint system-deps node-deps js-deps
	$(BIN)/pytest -q

# promtool (Debian's prometheus package) for tests/ops, Chromium for the docs page's browser
# tests and redis-server for the multi-node tests: installed once, as root or with sudo.
# A systemd host starts the packages' services (ports 9090, 6379): stop and disable them; the
# tests start their own servers on free ports.
.PHONY: system-deps
system-deps:
	@{ command -v promtool && command -v chromium && command -v redis-server; } >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$SUDO apt-get update && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y --no-install-recommends prometheus chromium fonts-dejavu-core \
	      redis-server && \
	  for unit in prometheus redis-server; do \
	    if [ -d /run/systemd/system ] && systemctl is-enabled --quiet $$unit 2>/dev/null; then \
	      $$SUDO systemctl disable --now $$unit; \
	    fi; \
	  done; \
	}

# The Autobahn suite (kosoku) against the echo server; writes docs/conformance.md.
.PHONY: conformance bench bench-smoke bench-peers bench-metrics bench-broadcast bench-breakdown \
	bench-nodes bench-emitter
conformance: $(STAMP)
	$(BIN)/python bench/conformance.py

# Sections 1-10 against the ASGI adapter on uvicorn; rewrites that section of the page.
.PHONY: conformance-asgi
conformance-asgi: $(STAMP)
	$(BIN)/python bench/conformance.py --asgi

# The benchmark harness's own dependencies (matplotlib for the charts), kept out of `make test`.
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# socketspec beside picows, python-socketio, websockets, FastAPI and the floor of a bare uvloop
# protocol (each peer in its own venv under .cache/bench/), 3 runs of every workload, then 1
# and 2 shards; about 12 minutes on 2 cores. The capacity workload is `make bench-capacity`.
# Writes bench/results/<date>.json and .md, bench/results/latest.md, docs/perf-*.png and the
# results in docs/performance.md. Options: make bench BENCH_ARGS="--runs 1 --servers socketspec".
bench: $(BENCH_STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# One room of 10,000, 50,000 and then 100,000 members on a 2-shard cluster (more shards where
# the descriptor limit needs them): connect rate, memory per connection with the kernel's, and
# one broadcast to all of them at a time; about 5 minutes, on every core. Not in `make bench`.
.PHONY: bench-capacity
bench-capacity: $(BENCH_STAMP)
	$(BIN)/python bench/run.py --workloads capacity --runs 1 --no-charts $(BENCH_ARGS)

# Every workload once, small and short, socketspec only (what tests/bench runs); writes to /tmp.
bench-smoke: $(STAMP)
	$(BIN)/python bench/run.py --smoke --out $$(mktemp -d)

# Installs the peers' environments under .cache/bench/ without running anything.
bench-peers: $(STAMP)
	$(BIN)/python bench/venvs.py

# Where the CPU time of one echo message goes, layer by layer, in-process (no sockets, about
# 10 s); writes bench/results/breakdown.md.
bench-breakdown: $(STAMP)
	$(BIN)/python bench/breakdown.py

# Echo throughput and idle memory, metrics on and off side by side (and the websockets library);
# writes bench/results/metrics-latest.md.
bench-metrics: $(STAMP)
	$(BIN)/python bench/echo.py

# Room broadcast to 1,000 listeners on 1 shard, then on 2 shards; writes bench/results/broadcast-latest.md.
bench-broadcast: $(STAMP)
	$(BIN)/python bench/broadcast.py

# Room broadcast across two nodes through Redis: socketspec beside python-socketio's
# AsyncRedisManager, 3 runs each (a redis-server of its own on a free port, nothing on disk; needs
# redis-server, see system-deps); about 1.5 minutes. Writes bench/results/nodes-<date>.json and .md,
# bench/results/nodes-latest.md and its table in docs/performance.md.
# Options: make bench-nodes NODES_ARGS="--runs 1 --members 500".
bench-nodes: $(STAMP)
	$(BIN)/python bench/nodes.py $(NODES_ARGS)

# A worker with only Redis pushing into a 1,000-member room: socketspec.Emitter beside
# python-socketio's write-only AsyncRedisManager, in one run (needs redis-server). Writes
# bench/results/emitter-<date>.json and .md and bench/results/emitter-latest.md.
# Options: make bench-emitter EMITTER_ARGS="--runs 3 --messages 5000".
bench-emitter: $(STAMP)
	cd bench && ../$(BIN)/python emitter.py $(EMITTER_ARGS)

# The fault campaign against a 2-shard cluster (kill -9 under broadcast load, a replacement
# shard killed while it boots, SIGHUP reloads under connection churn, a stalled reader, and
# connection-state recovery through drops, kills and reloads with 400 clients, the fault
# test of `make test` at a larger scale): lost, duplicated and reordered messages per class;
# about 5 minutes, not part of `make test`.
# Writes bench/results/chaos-latest.md (the figures docs/reliability.md records).
# Options: make chaos CHAOS_ARGS="--kills 2 --reloads 2", CHAOS_ARGS="--only recovery".
.PHONY: chaos
chaos: $(STAMP)
	$(BIN)/python bench/chaos.py --out bench/results/chaos-latest.md $(CHAOS_ARGS)

# The chat example on a 2-shard cluster; `make demo` prints an in-process TestClient conversation.
run: $(STAMP)
	$(BIN)/socketspec-cluster examples.chat:socket --workers 2 --port $${PORT:-8000}

demo: $(STAMP)
	$(BIN)/python examples/chat_demo.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The official AsyncAPI parser, to validate /asyncapi.json in the tests (npm, kept in .cache/node;
# installed once, then the stamp file is there).
NODE_DEPS := .cache/node/node_modules/@asyncapi/parser/package.json
.PHONY: node-deps
node-deps: $(NODE_DEPS)
$(NODE_DEPS):
	mkdir -p .cache/node
	cd .cache/node && npm install --no-audit --no-fund --loglevel=error @asyncapi/parser@3

# The browser client (clients/js) and the `export-schema --format typescript` module's
# type-check: TypeScript and terser from npm at pinned versions, kept in .cache/jsclient. `make js-client` compiles clients/js/dist/ (the npm package's module and
# types) and writes its minified copy, the one the Python package ships, to
# src/socketspec/apidocs/static/socketspec.js; commit that file with the source it came from
# (a test fails when it is stale). `make js-pack` writes the npm tarball into clients/js/.
JS_TOOLS := .cache/jsclient/node_modules
JS_STAMP := $(JS_TOOLS)/.installed-typescript-5.9.3-terser-5.51.4
JS_SHIPPED := src/socketspec/apidocs/static/socketspec.js
.PHONY: js-deps js-client js-pack
js-deps: $(JS_STAMP)
$(JS_STAMP):
	mkdir -p .cache/jsclient
	cd .cache/jsclient && npm install --no-audit --no-fund --loglevel=error --save-exact \
	  typescript@5.9.3 terser@5.51.4
	touch $(JS_STAMP)

js-client: $(JS_STAMP)
	$(JS_TOOLS)/.bin/tsc -p clients/js
	$(JS_TOOLS)/.bin/terser clients/js/dist/index.js --module --compress --mangle \
	  --comments false --preamble "/* socketspec-client $$(node -p 'require("./clients/js/package.json").version') */" \
	  --output $(JS_SHIPPED)
	@echo "$(JS_SHIPPED): $$(wc -c < $(JS_SHIPPED)) bytes, $$(gzip -9 -c $(JS_SHIPPED) | wc -c) gzipped"

js-pack: js-client
	cd clients/js && npm pack --loglevel=error
