# moat: build the components and the host, run the demo, run the tests.
#
#   make run     build what is missing, then run the shop demo on a clean data directory
#   make test    build the components (test ones too) and run every test
#   make build   target/release/moat and the shop components where moat.toml expects them
#   make bench   benchmarks against native baselines (docs/BENCHMARKS.md)
#   make bench-instructions   the same rows in instructions, under callgrind
#   make fuzz    fuzz the manifest and WAVE call parsers (bounded time; not in CI)

CARGO  ?= cargo
GUESTS := target/wasm32-wasip2/guest
MOAT   := target/release/moat
DEMO   := target/demo

# Components of the shop, and test-only components loaded by tests/.
COMPONENTS      := product order product-v2
TEST_COMPONENTS := probe stray listener forger ping tally relay product-major2 product-dropped product-bad-migrate product-trap-init hostile impostor init-writer sqlrunner slow-start kinds

GUEST_BUILD = $(CARGO) build --profile guest --target wasm32-wasip2

.PHONY: build run test test-tools http-tools bench bench-instructions components test-components py-components host wasm-target clean fuzz

build: components host

wasm-target:
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

components: wasm-target
	$(GUEST_BUILD) $(addprefix -p ,$(COMPONENTS))

test-components: wasm-target
	$(GUEST_BUILD) $(addprefix -p ,$(COMPONENTS) $(TEST_COMPONENTS))

# Components written in Python (componentize-py, installed into target/py-venv).
py-components:
	tests/components/py-product/build.sh
	STUB_WASI=1 tests/components/py-product/build.sh

host:
	$(CARGO) build --release -p moat

test: test-components py-components test-tools http-tools
	$(CARGO) test -p moat

# Peer tools that check the HTTP gateway: openapi-spec-validator and
# schemathesis, in a venv of their own under target/.
HTTP_VENV := target/http-venv
http-tools: $(HTTP_VENV)/.installed
$(HTTP_VENV)/.installed:
	python3 -m venv $(HTTP_VENV)
	$(HTTP_VENV)/bin/pip install -q schemathesis==4.32.5 openapi-spec-validator==0.9.0
	touch $@

# What the tests run beside moat: nats-server, iptables for the partition
# test (which needs root for its network namespaces and skips, saying so,
# without), and prometheus with promtool for the metrics test. Installed
# from Debian where missing and possible.
test-tools:
	@missing=""; \
	command -v nats-server >/dev/null || missing="$$missing nats-server"; \
	command -v iptables >/dev/null || missing="$$missing iptables"; \
	{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing"; \
	    (apt-get install -y -q $$missing >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null)); \
	  else \
	    echo "missing:$$missing (install them; the tests that need them fail or skip)"; \
	  fi; \
	fi

# The cost of the boundary, each row against a native baseline measured in
# the same run; prints the table and writes docs/BENCHMARKS.md.
bench: test-components
	$(CARGO) bench -p moat --bench moat

# Instructions per operation under callgrind, moat against native, into
# docs/BENCHMARKS.md beside the times (valgrind from Debian where missing).
bench-instructions: test-components
	@command -v valgrind >/dev/null || (apt-get install -y -q valgrind >/dev/null 2>&1 || sudo apt-get install -y -q valgrind)
	$(CARGO) bench -p moat --bench moat -- --instructions

clean:
	$(CARGO) clean

# Fuzz the manifest parser and WAVE call parsing, FUZZ_SECONDS each (not in CI).
# cargo-fuzz wants nightly flags; RUSTC_BOOTSTRAP lets the stable compiler take them.
FUZZ_SECONDS ?= 120
fuzz: components
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@mkdir -p host/fuzz/corpus/manifest host/fuzz/corpus/wave_call
	cd host/fuzz && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=../../target/fuzz \
	  cargo fuzz run manifest corpus/manifest seeds/manifest -- -max_total_time=$(FUZZ_SECONDS)
	cd host/fuzz && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=../../target/fuzz MOAT_GUESTS=$(CURDIR)/$(GUESTS) \
	  cargo fuzz run wave_call corpus/wave_call seeds/wave_call -- -max_total_time=$(FUZZ_SECONDS)

# The demo: every step is a plain `moat call`, printed before it runs.
MOAT_DEMO = $(MOAT) --data $(DEMO)

run: build
	@rm -rf $(DEMO)
	@echo
	@echo "== product owns the catalog. Create two products (prices in cents: 2599 is 25.99)."
	@echo "   Each publishes a created event; order keeps its own replica of names and prices."
	$(MOAT_DEMO) call product 'create-product({product-id: "PROD001", name: "Wireless Mouse", price: 2599, stock: 150})'
	$(MOAT_DEMO) call product 'create-product({product-id: "PROD005", name: "Mechanical Keyboard", price: 7999, stock: 40})'
	@echo
	@echo "== order owns orders. Place ORD12345 for CUST987: each item keeps its own copy of name and price."
	$(MOAT_DEMO) call order 'place-order("ORD12345", "CUST987", [{product-id: "PROD001", quantity: 2}, {product-id: "PROD005", quantity: 1}])'
	@echo
	@echo "== The order, read back from order's own database:"
	$(MOAT_DEMO) call order 'get-order("ORD12345")'
	@$(MOAT_DEMO) call order 'get-order("ORD12345")' | $(RECEIPT)
	@echo
	@echo "== A price change reaches the pending order through an event:"
	$(MOAT_DEMO) call product 'set-price("PROD001", 2799)'
	@$(MOAT_DEMO) call order 'get-order("ORD12345")' | $(RECEIPT)
	@echo
	@echo "== Submitting locks the prices and asks product for stock; product reserves it and the order is confirmed:"
	$(MOAT_DEMO) call order 'submit-order("ORD12345")'
	$(MOAT_DEMO) call order 'get-order("ORD12345")'
	$(MOAT_DEMO) call product 'list-products()'
	@echo
	@echo "== An order for more keyboards than are left is rejected, and no stock moves:"
	$(MOAT_DEMO) call order 'place-order("ORD12346", "CUST987", [{product-id: "PROD001", quantity: 1}, {product-id: "PROD005", quantity: 100}])'
	$(MOAT_DEMO) call order 'submit-order("ORD12346")'
	$(MOAT_DEMO) call order 'get-order("ORD12346")'
	$(MOAT_DEMO) call product 'list-products()'
	@echo
	@echo "== The events that carried all this, and who has them:"
	$(MOAT_DEMO) events
	@echo
	@echo "== Each component wrote only its own database:"
	@ls -1 $(DEMO)/*.db
	@echo
	@echo "== The same app over HTTP: moat up --http serves every contract function with JSON, from the WIT."
	@$(MOAT_DEMO) up --http 127.0.0.1:0 > $(DEMO)/up.log 2>&1 & pid=$$!; \
	  for i in $$(seq 100); do grep -q "HTTP gateway at" $(DEMO)/up.log && break; sleep 0.1; done; \
	  url=$$(sed -n 's/.*HTTP gateway at \(http:[^ ]*\).*/\1/p' $(DEMO)/up.log); \
	  echo "curl -X POST $$url/order/orders/get-order -d '{\"order-id\": \"ORD12345\"}'"; \
	  if command -v curl >/dev/null; then curl -s -X POST $$url/order/orders/get-order -d '{"order-id": "ORD12345"}'; echo; \
	  else echo "(curl is not installed: skipped)"; fi; \
	  kill $$pid; wait $$pid

# Prints the items of an order in WAVE as "2 x Wireless Mouse (PROD001) at 25.99".
RECEIPT = grep -o 'product-id: "[^"]*", quantity: [0-9]*, product-name: "[^"]*", unit-price: [0-9]*' \
	| sed -E 's/product-id: "([^"]*)", quantity: ([0-9]*), product-name: "([^"]*)", unit-price: ([0-9]*)/\2 \3 \1 \4/' \
	| awk '{ price = $$NF; id = $$(NF-1); qty = $$1; $$1 = ""; $$NF = ""; $$(NF-1) = ""; sub(/^ +/, ""); sub(/ +$$/, ""); \
	         printf "   %s x %-22s (%s) at %d.%02d\n", qty, $$0, id, price / 100, price % 100 }'
