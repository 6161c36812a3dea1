# clnode — see README.md. `make test` is what CI runs (after `make deps`).
SHELL := /usr/bin/env bash
CARGO ?= cargo
# Integration tests start several geth/EthereumJS processes; two at a time
# keeps a 2-core machine responsive.
TEST_THREADS ?= 2

.PHONY: all build deps test unit-test lint fmt static run run-ha run-leader run-member clean fuzz faults bench soak upgrade-test

all: build

# CLNODE_GIT_COMMIT: the commit clnode_build_info reports (src/metrics.rs).
build:
	CLNODE_GIT_COMMIT=$$(git rev-parse --short=12 HEAD 2>/dev/null) $(CARGO) build --release

## Installs Redis, PostgreSQL, Prometheus, geth v1.16.8 and the EthereumJS client if missing.
deps:
	scripts/deps.sh

# Seconds per fuzz target: a short run inside `make test`, a long one in `make fuzz`.
FUZZ_SHORT_S ?= 15
FUZZ_LONG_S ?= 600

## An execution client upgraded in a running cluster (tests/upgrade.rs; docs/OPERATIONS.md,
## "Upgrading an execution client"): geth v1.16.8 to the next geth node by node with a hand-over,
## and geth <-> EthereumJS hand-overs. Builds the second geth into .tools/ first (scripts/deps.sh
## geth-next: minutes, once). About 2 minutes; prints the pause of each step.
upgrade-test: deps
	scripts/deps.sh geth-next
	$(CARGO) test --test upgrade -- --include-ignored --nocapture --test-threads=1

## Unit and integration tests on real Redis, PostgreSQL, geth and EthereumJS (and promtool
## on deploy/prometheus/: tests/monitoring.rs), then a short run of every fuzz target.
test: deps
	$(CARGO) test --lib --bins --tests -- --test-threads=$(TEST_THREADS)
	scripts/fuzz.sh $(FUZZ_SHORT_S)

## Every fuzz target for FUZZ_LONG_S seconds.
fuzz:
	scripts/fuzz.sh $(FUZZ_LONG_S)

unit-test:
	$(CARGO) test --lib

## Formatting, clippy (the [lints] table in Cargo.toml, warnings denied), rustdoc with
## warnings denied (private items too), and a build on the declared rust-version.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --lib --document-private-items --quiet
	scripts/msrv.sh

fmt:
	$(CARGO) fmt --all

## A statically linked binary in target/static/clnode.
static:
	scripts/build-static.sh

## A local cluster (Redis, PostgreSQL, geth, two leaders, a member, tx load, Prometheus) with a live status
## table; state in .devnet/, Ctrl-C stops it (exit 0). `scripts/devnet.sh leader` names the node
## that leads, `scripts/devnet.sh restart NAME` brings back a killed part. DEVNET_*: scripts/README.md.
run: deps
	scripts/devnet.sh

## The replicated topology (README, "make run-ha"): etcd, two Patroni PostgreSQL behind HAProxy
## and PgBouncer, two Redis with three sentinels, two leaders, two members behind HAProxy,
## Prometheus; a row per service in the live table. State in .devnet-ha/; scripts/devnet-ha.sh
## pg-primary / redis-master / kill NAME / restart NAME.
run-ha: deps
	scripts/devnet-ha.sh

## One leader with the seed's defaults, against services you already run; signs with the
## devnet's key (.devnet/signing/leader.key, made by `make run` or `clnode keygen PATH`).
run-leader:
	$(CARGO) run --release -- --instance-id $${INSTANCE_ID:-leader-1} --mode leader \
		--jwt-secret-file $${JWT_SECRET_FILE:-.devnet/jwt/leader-1.hex} \
		--signing-key-file $${SIGNING_KEY_FILE:-.devnet/signing/leader.key}

## One member with the seed's defaults, against services you already run; pins the public
## key of the devnet's signing key (.devnet/signing/leader.pub).
run-member:
	$(CARGO) run --release -- --instance-id $${INSTANCE_ID:-member-1} --mode member \
		--jwt-secret-file $${JWT_SECRET_FILE:-.devnet/jwt/member-1.hex} \
		--leader-public-key $${LEADER_PUBLIC_KEY:-$$(cat .devnet/signing/leader.pub)} \
		--eth-client-url $${ETH_CLIENT_URL:-http://localhost:8552} --health-addr $${HEALTH_ADDR:-:8081}

## Removes .devnet/ and .devnet-ha/ (refused while a devnet from one runs; see scripts/devnet.sh)
## and build output.
clean:
	scripts/devnet.sh clean
	scripts/devnet-ha.sh clean
	$(CARGO) clean

## Benchmarks on real services; writes docs/BENCHMARKS.md and docs/benchmarks.json.
## CLNODE_BENCH_ONLY=P1,P4 runs a subset.
bench: deps
	scripts/deps.sh bench
	$(CARGO) bench --bench cluster

## Two leader-mode nodes and two members under sustained load for SOAK_MINUTES (default 60),
## the leader never killed: counts false failovers, lease losses, warn/error lines, /health 503s
## and RSS every minute (target/soak/progress.jsonl, report.json). SOAK_RATE: tx/s per geth
## (default 10); SOAK_FLAGS: extra leader flags (e.g. "--lease-ttl 500ms"). Fails if unclean.
SOAK_MINUTES ?= 60
soak: deps
	SOAK_MINUTES=$(SOAK_MINUTES) $(CARGO) bench --bench soak

## The full fault-injection run (tests/faults/; `make test` runs its quick subset):
## every case of the failure matrix many times and the randomized mode, 20-30 min.
## Figures in target/faults-report.json; CLNODE_FAULT_SEED=N replays a run's choices.
## CLNODE_FAULT_CASES=sigkill,redis-kill runs only those cases (names: docs/FAULTS.md).
faults: deps
	CLNODE_FAULTS=full $(CARGO) test --release --test faults -- --test-threads=1 --nocapture
