# The two commands of the README's Quick start. Both install what they need
# first (scripts/setup.sh), then build in the one profile everything shares
# (release), so RocksDB and wasmtime are compiled once.
.PHONY: setup setup-guests guests demo test bench

setup:
	@./scripts/setup.sh

setup-guests:
	@./scripts/setup-guests.sh

# The summers in Python, JavaScript and C (target/guests/), which the
# conformance suite runs beside the Rust one.
guests: setup-guests
	@./guests/build.sh

# The main job: stream-sum on an embedded host with the default guests.
demo: setup
	cargo run --release -p weir -- stream-sum

# The whole test suite: host and guest unit tests, the integration test binary
# (which runs the conformance suite on every guest).
test: setup guests
	cargo test --release --workspace

bench: setup
	cargo run --release -p weir -- bench journals
	cargo run --release -p weir -- bench sequencer
