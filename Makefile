# The two commands of the README's Quick start. Both install what they need
# first (scripts/setup.sh), then build in the one profile everything shares
# (release), so RocksDB and wasmtime are compiled once.
.PHONY: setup demo test bench

setup:
	@./scripts/setup.sh

# The main job: stream-sum on an embedded host with the default guests.
demo: setup
	cargo run --release -p weir -- stream-sum

# The whole test suite: host and guest unit tests, the integration test binary.
test: setup
	cargo test --release --workspace

bench: setup
	cargo run --release -p weir -- bench journals
	cargo run --release -p weir -- bench sequencer
