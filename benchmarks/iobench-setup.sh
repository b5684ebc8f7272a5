# Sourced by iobench.sh and redirect.sh: paths, the checks that `make` ran and python3 exists,
# a work directory removed at exit, and the 64 MiB pattern disk the iobench guest verifies
# (block i's first 8 bytes hold its sector number, 8 * i).
here=$(cd "$(dirname "$0")" && pwd); repo=$(dirname "$here")
hvctl=$repo/.build/release/hvctl guest=$repo/guest-images/out/iobench.elf
name=${0##*/}
[ -x "$hvctl" ] && [ -f "$guest" ] || { echo "$name: run 'make' first" >&2; exit 1; }
command -v python3 >/dev/null || { echo "$name: python3 is needed to read the VMs' statistics" >&2; exit 1; }
work=$(mktemp -d "/tmp/${name%.sh}.XXXXXX"); trap 'rm -rf "$work"' EXIT
perl -e 'for $i (0..16383) { print pack("Q<", $i*8) . ("\0" x 4088) }' > "$work/disk.img"
