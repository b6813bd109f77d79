# libftkv: build, install, test, demo. See docs/building.md.
#
#   make                          release build (.build-release/release/libftkv.so and ftkv-tool)
#   make install PREFIX=/opt/ftkv install lib/, bin/, include/, lib/pkgconfig/, share/ftkv/fortran/
#   make test                     every test; ends with "N passed, M failed"
#   make demo                     install deps if missing, build, run the checkpoint/restart demo
#   make bench                    ftkv bench and ftkv bench-commit under mpirun with 2 and 4 ranks,
#                                 ftkv bench-recovery (a rank killed) with 4
#   make clean

SHELL := /bin/bash
.DEFAULT_GOAL := all

PREFIX  ?= /usr/local
DESTDIR ?=
SWIFT   ?= swift
STRIP   ?= strip

# The toolchain's usual place, for shells that do not have it on PATH.
export PATH := $(PATH):/opt/swift/usr/bin

hdr_version = $(shell sed -n 's/^\#define FTKV_VERSION_$(1)[[:space:]]*\([0-9][0-9]*\).*/\1/p' include/ftkv.h)
VERSION_MAJOR := $(call hdr_version,MAJOR)
VERSION := $(VERSION_MAJOR).$(call hdr_version,MINOR).$(call hdr_version,PATCH)
SONAME  := libftkv.so.$(VERSION_MAJOR)
LIBFILE := libftkv.so.$(VERSION)

# The Swift runtime is linked into libftkv.so and ftkv, so they run without the toolchain.
# Each variant has its own scratch path: SwiftPM does not relink when only flags change (after
# changing these flags, remove .build-release and .build-install).
# -enforce-exclusivity=unchecked: no run-time exclusivity checks in the release library (the
# debug build, which the unit tests and the Swift example run, keeps them). They cost 10-25% on the put
# loop, put+fence and local gets (ftkv bench, alternated runs; docs/benchmarks.md), and a failed
# check is a trap that would kill the application's whole job.
RELEASE_FLAGS := -c release -Xswiftc -static-stdlib -Xswiftc -enforce-exclusivity=unchecked
RELEASE_BUILD := .build-release
INSTALL_BUILD := .build-install
STAGE := $(CURDIR)/build/stage
# The command-line tool's SwiftPM product (the name "ftkv" belongs to the library product);
# it is installed as bin/ftkv.
TOOL_PRODUCT ?= ftkv-tool

ABS_PREFIX = $(abspath $(PREFIX))
DEST = $(DESTDIR)$(ABS_PREFIX)

.PHONY: all install stage test demo bench clean distclean

all:
	$(SWIFT) build $(RELEASE_FLAGS) --scratch-path $(RELEASE_BUILD)
	@echo "built: $(RELEASE_BUILD)/release/libftkv.so $(RELEASE_BUILD)/release/$(TOOL_PRODUCT)"

# The install build adds the SONAME (only here: in Package.swift it would break programs linked
# against .build/debug/libftkv.so, which has no libftkv.so.0 beside it).
install:
	$(SWIFT) build $(RELEASE_FLAGS) -Xlinker -soname=$(SONAME) --scratch-path $(INSTALL_BUILD)
	@readelf -d $(INSTALL_BUILD)/release/libftkv.so | grep -q 'SONAME.*\[$(SONAME)\]' \
	  || { echo "error: $(INSTALL_BUILD)/release/libftkv.so has no SONAME $(SONAME)" >&2; exit 1; }
	install -d $(DEST)/lib/pkgconfig $(DEST)/bin $(DEST)/include $(DEST)/share/ftkv/fortran
	install -m 755 $(INSTALL_BUILD)/release/libftkv.so $(DEST)/lib/$(LIBFILE)
	$(STRIP) --strip-unneeded $(DEST)/lib/$(LIBFILE)
	ln -sfn $(LIBFILE) $(DEST)/lib/$(SONAME)
	ln -sfn $(SONAME) $(DEST)/lib/libftkv.so
	install -m 755 $(INSTALL_BUILD)/release/$(TOOL_PRODUCT) $(DEST)/bin/ftkv
	$(STRIP) --strip-unneeded $(DEST)/bin/ftkv
	install -m 644 include/ftkv.h $(DEST)/include/ftkv.h
	sed -e 's|@PREFIX@|$(ABS_PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' pkgconfig/ftkv.pc.in \
	  > $(DEST)/lib/pkgconfig/ftkv.pc
	chmod 644 $(DEST)/lib/pkgconfig/ftkv.pc
	install -m 644 fortran/ftkv.f90 $(DEST)/share/ftkv/fortran/ftkv.f90
	@echo "installed libftkv $(VERSION) in $(DEST)"

# Install into build/stage, where the tests, demo and bench look.
stage:
	$(MAKE) install PREFIX=$(STAGE) DESTDIR=

test:
	bash tests/run-all.sh

demo:
	bash scripts/demo.sh

bench: stage
	source tests/mpi-env.sh && \
	  echo "== ftkv bench, 2 ranks" && ftkv_mpirun 2 900 $(STAGE)/bin/ftkv bench && \
	  echo "== ftkv bench, 4 ranks" && ftkv_mpirun 4 900 $(STAGE)/bin/ftkv bench && \
	  echo "== ftkv bench-commit, 2 ranks" && ftkv_mpirun 2 900 $(STAGE)/bin/ftkv bench-commit --dir build/bench-data && \
	  echo "== ftkv bench-commit, 4 ranks" && ftkv_mpirun 4 900 $(STAGE)/bin/ftkv bench-commit --dir build/bench-data && \
	  echo "== ftkv bench-recovery, 4 ranks (one killed)" && OMPI_MCA_async_mpi_finalize=1 ftkv_mpirun 4 900 --enable-recovery $(STAGE)/bin/ftkv bench-recovery

clean:
	rm -rf .build $(RELEASE_BUILD) $(INSTALL_BUILD) build
	$(MAKE) -C examples-c clean

distclean: clean
	rm -rf .swiftpm Package.resolved
