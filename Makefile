# Sidecore: `make` builds hvctl and the default guest, `make test` runs every test,
# `make run` boots the default guest (inside the nested rig when this host's KVM is PVM).
SWIFT ?= swift
HVCTL := .build/release/hvctl
GUEST := guest-images/out
# Debian packages the build and tests use; each is installed only when missing (libstdc++-12-dev:
# the static libstdc++ that linker/static/libstdc++.so links into hvctl).
DEB_PACKAGES := busybox-static cpio qemu-system-x86 lz4 binutils gcc libc6-dev libstdc++-12-dev liburing-dev \
	python3 python3-pip curl socat prometheus acpica-tools iproute2
# PyPI packages the API tests use (the OpenAPI document's validator, schemathesis against the server).
PY_PACKAGES := openapi-spec-validator schemathesis

.PHONY: all deps hvctl guest test unit-test integration-test fuzz tsan run format clean hot-text-order

all: hvctl guest

deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get install -y -qq $$missing >/dev/null || { apt-get update -qq && apt-get install -y -qq $$missing; }; \
	fi
	@python3 -c "import openapi_spec_validator, schemathesis" 2>/dev/null || \
		python3 -m pip install -q --break-system-packages $(PY_PACKAGES)

# Static Swift runtime, so the same binary runs inside the nested rig's L2 with only libc & co.
hvctl: deps
	$(SWIFT) build -c release --static-swift-stdlib --product hvctl

# Lays out hvctl's code by where it runs once the VMs are up (linker/profile-hot-text; needs root).
# Run it when the memory test's text grows. SwiftPM does not relink when only the order file
# changes, hence the rm (a plain `make` after editing the order keeps the old layout too).
# --no-demangle: the order names C++ functions by their mangled names.
hot-text-order: all
	rm -f $(HVCTL)
	$(SWIFT) build -c release --static-swift-stdlib --product hvctl -Xlinker -Map=.build/hvctl.map \
		-Xlinker --no-demangle
	linker/profile-hot-text $(HVCTL) .build/hvctl.map > .build/hvctl-hot-text.order
	test -s .build/hvctl-hot-text.order
	mv .build/hvctl-hot-text.order linker/hvctl-hot-text.order
	rm -f $(HVCTL)
	$(SWIFT) build -c release --static-swift-stdlib --product hvctl

guest: deps
	$(MAKE) -C guest-images

# Fuzz targets over every guest-facing parser and state machine (Fuzz/run); FUZZ_SECONDS each.
FUZZ_SECONDS ?= 30
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) Fuzz/run

# The tests of concurrent paths (lifecycle races, engines, side cores, transport) under
# ThreadSanitizer; any report fails the run. STRESS_ITERATIONS sets the stress test's rounds.
TSAN_TESTS ?= LifecycleStressTests|EngineIsolationTests|SideCoreEngineTests|VirtioPCITransportTests|BlockQueueHandlerTests|VMMRuntimeTests|APIServerTests
tsan:
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path .build-tsan
	TSAN_OPTIONS=halt_on_error=1 $(SWIFT) test --skip-build --scratch-path .build-tsan --filter '$(TSAN_TESTS)'

test: all
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	$(MAKE) tsan
	FUZZ_SECONDS=4 FUZZ_JOBS=2 Fuzz/run

run: all
	@if $(HVCTL) check --require-native >/dev/null 2>&1; then \
		exec $(HVCTL) run --kernel $(GUEST)/bzImage --initrd $(GUEST)/initramfs.cpio; \
	else \
		echo "make run: this host's /dev/kvm emulates guest ring 0 (PVM); booting the default guest inside the nested rig (QEMU TCG + KVM-on-SVM)"; \
		exec guest-images/nested/run --interactive -- hvctl run --kernel /guest/bzImage --initrd /guest/initramfs.cpio; \
	fi

# Lays out the Swift sources as .swift-format says (120 columns, 4-space indents; layout only,
# no rewriting rules): swift-format comes with the Swift toolchain.
format:
	$(SWIFT) format --in-place --recursive Sources Tests Fuzz/Sources
	$(SWIFT) format --in-place Package.swift Fuzz/Package.swift

clean:
	rm -rf .build
	$(MAKE) -C guest-images clean
