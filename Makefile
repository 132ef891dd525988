# SPDX-License-Identifier: GPL-2.0
# stable-splice: build the module, run the tests in a VM.
#
#   make                 build stable_splice.ko against $(KDIR) and the
#                        stable-splice tool (tools/stable-splice/target/release/)
#   make KUNIT=1         ... with the KUnit suite built in
#   make install         install it into /lib/modules/<kernel>/extra, depmod,
#                        and the tool as /usr/local/bin/stable-splice
#                        (INSTALL_MOD_PATH=DIR stages it under DIR instead)
#   make uninstall       remove it again
#   make check           build what is missing, run every test in the VM
#   make bench           benchmarks in the VM (separate from the tests)

STABLE_SPLICE_CACHE ?= $(HOME)/.cache/stable-splice
KDIR ?= $(STABLE_SPLICE_CACHE)/kernel
KUNIT ?= 0
export LIBCLANG_PATH ?= /usr/lib/llvm-19/lib
export PATH := $(HOME)/.cargo/bin:$(PATH)

TOOL = tools/stable-splice/target/release/stable-splice
BINDIR ?= /usr/local/bin

all: module tool

module:
	@test -f "$(KDIR)/.config" || { echo "error: no kernel build at KDIR=$(KDIR): run scripts/setup or pass KDIR=<Rust-enabled kernel build tree>" >&2; exit 1; }
	@grep -q '^CONFIG_RUST=y' "$(KDIR)/.config" || { echo "error: kernel at $(KDIR) has no CONFIG_RUST=y" >&2; exit 1; }
	@# a KUNIT change must rebuild the crate: remember the last choice
	@test "$$(cat .kunit 2>/dev/null)" = "$(KUNIT)" || { echo $(KUNIT) > .kunit; rm -f src/*.o; }
	$(MAKE) -C $(KDIR) M=$(CURDIR) KUNIT=$(KUNIT) modules

# The user-space tool (Rust, std + libc).
tool:
	cd tools/stable-splice && cargo build -q --release --locked

# The kernel release of $(KDIR), for install paths.
KREL = $(shell cat "$(KDIR)/include/config/kernel.release" 2>/dev/null)

install: module tool
	@test "$(KUNIT)" = 0 || { echo "error: make install ships the module without KUnit (KUNIT=0)" >&2; exit 1; }
	$(MAKE) -C $(KDIR) M=$(CURDIR) INSTALL_MOD_DIR=extra modules_install
	depmod $(if $(INSTALL_MOD_PATH),-b $(INSTALL_MOD_PATH)) $(KREL)
	install -D -m 755 $(TOOL) $(INSTALL_MOD_PATH)$(BINDIR)/stable-splice

uninstall:
	rm -f $(INSTALL_MOD_PATH)/lib/modules/$(KREL)/extra/stable_splice.ko*
	rm -f $(INSTALL_MOD_PATH)$(BINDIR)/stable-splice
	depmod $(if $(INSTALL_MOD_PATH),-b $(INSTALL_MOD_PATH)) $(KREL)

check:
	@scripts/check

bench:
	@scripts/bench

# The race cases for longer: scripts/soak --help.
soak:
	@scripts/soak

clean:
	$(MAKE) -C $(KDIR) M=$(CURDIR) clean 2>/dev/null || true
	rm -f rust/bindings_generated.rs .kunit
	rm -rf tests/userspace/target tools/stable-splice/target tools/uapi/target

.PHONY: all module tool install uninstall check bench soak clean
