# xdp-director — build, test, demo and benchmarks.
# Fresh machine: `make demo` (the demo) or `make test` (all tests). Both install what they need.

SHELL := /bin/bash
CLANG ?= clang
APT_PACKAGES := clang llvm libbpf-dev libbpf1 bpftool iproute2 tcpdump wrk prometheus ethtool \
                iputils-ping curl qemu-system-x86 busybox-static cpio kmod ipvsadm
BPF_CFLAGS := -O2 -g -Wall -Werror -target bpf -D__TARGET_ARCH_x86 -I bpf -I /usr/include/x86_64-linux-gnu
BPF_OBJ := bpf/director.bpf.o
BPF_SRC := $(wildcard bpf/*.c bpf/*.h)

.PHONY: all deps apt npm build bpf ts test test-ipvs bench bench-e2e bench-ipvs bench-stats bench-datapath bench-maglev bench-control demo clean bpffs bench-ffi

all: build

# Installs only what is missing, so it is cheap on a machine that already has everything.
deps: apt npm bpffs

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

npm: node_modules/.package-lock.json
node_modules/.package-lock.json: package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

# bpffs is where the director pins its maps; mount it if the host has not.
bpffs:
	@mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

build: bpf ts

# Test fixtures (test/bpf/fixtures/*.bpf.c): small objects the loader tests load.
TEST_BPF_OBJS := $(patsubst %.bpf.c,%.bpf.o,$(wildcard test/bpf/fixtures/*.bpf.c))

bpf: $(BPF_OBJ) $(TEST_BPF_OBJS)
test/bpf/fixtures/%.bpf.o: test/bpf/fixtures/%.bpf.c
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@
$(BPF_OBJ): $(BPF_SRC)
	$(CLANG) $(BPF_CFLAGS) -c bpf/director.bpf.c -o $@

ts: npm
	npx tsc -p tsconfig.json

test: deps build
	node test/run.mjs

test-ipvs: deps build
	node test/run.mjs ipvs-guest

bench: bench-e2e bench-ipvs bench-stats bench-datapath bench-maglev bench-control bench-ffi

bench-e2e: deps build
	node --import tsx bench/e2e.ts

# The same packet-rate table with IPVS, inside the IPVS guest (test/guest/; the host kernel has no IPVS).
bench-ipvs: deps build
	node --import tsx bench/ipvs-guest.ts

bench-stats: deps build
	node --import tsx bench/stats.ts

# ns per packet through BPF_PROG_TEST_RUN (XDP_DROP floor, minimal forwarder, director paths, IPv4 and
# IPv6), Maglev build time, and applying 1,000 VIPs x 10 backends through the XDP data path.
bench-datapath: deps build
	node --import tsx bench/datapath.ts

# Maglev ring build time and disruption against modulo hashing.
bench-maglev: npm
	node --import tsx bench/maglev.ts

# Kubernetes control plane at 1,000 and 10,000 Services against the API server fixture.
bench-control: deps build
	node --import tsx bench/control.ts

# Cost of one libbpf call through koffi against a plain JavaScript call (docs/decisions/0001).
bench-ffi: deps build
	node --import tsx bench/ffi-call.ts

demo: deps build
	node --import tsx test/demo/demo.ts

clean:
	rm -rf dist $(BPF_OBJ)
