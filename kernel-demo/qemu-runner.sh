#!/usr/bin/env bash
# The cargo runner of kernel-demo (`.cargo/config.toml`): `cargo run --release [--features ...]`
# boots the kernel cargo built in qemu-system-i386, on the machine `cargo xtask demo` uses.
# Further arguments (`cargo run --release -- backend=vmi crash=pf`) become the kernel command
# line. QEMU's exit status is mapped to the runner's: 33 (the kernel wrote 0x10 to
# isa-debug-exit: scenario passed) is 0; 35 (kernel failure: panic or fatal exception) is 1;
# 0 (a triple fault under -no-reboot) and anything else is 2.
set -u
elf=$1
shift
append=()
if [ $# -gt 0 ]; then
    append=(-append "$*")
fi
if ! command -v qemu-system-i386 >/dev/null 2>&1; then
    echo "qemu-runner: qemu-system-i386 is missing (Debian: apt-get install qemu-system-x86)" >&2
    exit 2
fi
qemu-system-i386 -nodefaults -machine pc -cpu qemu32 -m 128 \
    -display none -serial stdio -no-reboot \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -kernel "$elf" "${append[@]}"
status=$?
case $status in
    33) exit 0 ;;
    35) echo "qemu-runner: the kernel reported failure (QEMU status 35)" >&2; exit 1 ;;
    0) echo "qemu-runner: QEMU stopped without the exit device (triple fault?)" >&2; exit 2 ;;
    *) echo "qemu-runner: QEMU exited with status $status" >&2; exit 2 ;;
esac
