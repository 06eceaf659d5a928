#!/bin/bash
# Unpacks the kernel of Debian 12's backports (6.12 today) into DEST (boot/
# and lib/modules/), for the BLE test VM's pair test: Debian 12's own kernel
# (6.1) lacks the fix "Bluetooth: L2CAP: Fix corrupted list in
# hci_chan_del" and stops when an adapter is powered off under an open
# L2CAP channel. Leaves the machine's apt state alone (a sources list and
# package lists of its own). Nothing to do if DEST holds a kernel already.
#
# Usage: fetch-kernel.sh DEST   (.ci/run and `just test-ble` use target/vm-kernel)
set -euo pipefail
dest="${1:?usage: fetch-kernel.sh DEST}"
if compgen -G "$dest/boot/vmlinuz-*-amd64" >/dev/null; then exit 0; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chown _apt "$tmp" 2>/dev/null || true # apt downloads as its sandbox user
mkdir -p "$tmp/lists/partial"
echo 'deb http://deb.debian.org/debian bookworm-backports main' > "$tmp/sources.list"
apt=(-o "Dir::Etc::sourcelist=$tmp/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$tmp/lists"
  -o APT::Get::List-Cleanup=0)
apt-get "${apt[@]}" update -qq
# The metapackage names the versioned image package.
pkg=$(apt-cache "${apt[@]}" depends linux-image-amd64 | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
[ -n "$pkg" ] || { echo "no kernel package in bookworm-backports"; exit 1; }
(cd "$tmp" && apt-get "${apt[@]}" download -qq "$pkg")
mkdir -p "$dest"
dpkg-deb -x "$tmp"/"$pkg"_*.deb "$dest"
echo "unpacked $pkg into $dest"
