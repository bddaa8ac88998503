# Meshwork: build, test and run. `make demo` and `make test` install what is missing first
# (scripts/install-deps.sh: a Swift 6 toolchain through swiftly, libsodium-dev, pkg-config).
SWIFTLY_BIN := $(or $(SWIFTLY_HOME_DIR),$(HOME)/.local/share/swiftly)/bin
export PATH := $(PATH):$(SWIFTLY_BIN)
SWIFT ?= swift

.PHONY: all deps build release demo test clean

all: build

## deps: install what is missing (Swift 6, libsodium-dev, pkg-config) with apt-get and swiftly
deps:
	@./scripts/install-deps.sh

## build: debug build of the meshwork executable (.build/debug/meshwork)
build: deps
	$(SWIFT) build --product meshwork

## release: optimised build with the Swift runtime linked in (.build/release/meshwork; runs
## on any glibc host with libstdc++ and libsodium, no Swift needed)
release: deps
	$(SWIFT) build -c release --static-swift-stdlib --product meshwork

## demo: build, then start a 5-node mesh on this machine and show it work (no root needed)
demo: build
	.build/debug/meshwork demo

## test: the whole test suite (as root with /dev/net/tun, also the namespace lab)
test: deps
	$(SWIFT) test

clean:
	rm -rf .build
