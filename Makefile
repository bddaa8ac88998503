# Meshwork: build, test and run. Each target installs what is missing first.
SWIFT ?= swift
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build test deps release clean

all: build

## deps: install libsodium-dev (and pkg-config) with apt when pkg-config cannot find libsodium
deps:
	@if ! pkg-config --exists libsodium 2>/dev/null; then \
		echo "Installing libsodium-dev and pkg-config with apt-get..."; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libsodium-dev pkg-config; \
	fi

## build: debug build of the meshwork executable (.build/debug/meshwork)
build: deps
	$(SWIFT) build

## release: optimised build (.build/release/meshwork)
release: deps
	$(SWIFT) build -c release

## test: the whole test suite
test: deps
	$(SWIFT) test

clean:
	rm -rf .build
