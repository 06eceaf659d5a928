#!/bin/bash
# BLE on real BlueZ, in a VM: the kernel here has no Bluetooth, a Debian
# kernel under QEMU's software emulation does. Boots it with a busybox
# initramfs that loads the virtio, 9p and Bluetooth modules and mounts this
# machine's root read-only, then runs stage2.sh there (btvirt: two virtual
# controllers sharing one virtual air; bluetoothd; the checks).
#
# Needs: qemu-system-x86 linux-image-amd64 busybox-static bluez
# bluez-test-tools (apt); exits 2 without them. `just test-ble` and
# tests/bluez_vm.rs run it, about 40 s; `just bench-ble` (benches/link.rs)
# with more pings and a bulk transfer (VEIL_BLE_PINGS, VEIL_BLE_BULK bytes).
# With VEIL_BLE_PAIR (the veil-ble-pair program) it runs that instead: two
# veil nodes, one per adapter, talking across faults
# (integration-tests/tests/ble_vm.rs; VEIL_BLE_PAIR_COUNT messages each way,
# VEIL_BLE_PAIR_FAULTS, VEIL_BLE_PAIR_GATT_ONLY=1 for a second node that
# links over GATT only). VEIL_VM_KERNEL_ROOT: the kernel to boot.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
if [ -n "${VEIL_BLE_PAIR:-}" ]; then
  stage2="pair $VEIL_BLE_PAIR ${VEIL_BLE_PAIR_COUNT:-50} ${VEIL_BLE_PAIR_FAULTS:-remove,power,bluetoothd} ${VEIL_BLE_PAIR_GATT_ONLY:-0}"
else
  # The tool the checks run (the test passes the one cargo built for it).
  radio="${VEIL_BLE_RADIO:-}"
  if [ -z "$radio" ]; then
    (cd "$root" && cargo build -q -p veil-ble --bin veil-ble-radio)
    radio="$root/target/debug/veil-ble-radio"
  fi
  stage2="radio $radio ${VEIL_BLE_PINGS:-10} ${VEIL_BLE_BULK:-0}"
fi

for tool in qemu-system-x86_64 btvirt btmgmt /usr/libexec/bluetooth/bluetoothd /bin/busybox; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install qemu-system-x86 linux-image-amd64 busybox-static bluez bluez-test-tools)"; exit 2; }
done
# The VM's kernel: VEIL_VM_KERNEL_ROOT (a kernel package unpacked: boot/
# and lib/modules/), else the newest in /boot.
kroot="${VEIL_VM_KERNEL_ROOT:-}"
kernel=$(ls "$kroot"/boot/vmlinuz-*-amd64 2>/dev/null | sort -V | tail -n1)
if [ -z "$kernel" ] && [ -n "$kroot" ]; then
  echo "missing a kernel in $kroot (transports/ble/vm/fetch-kernel.sh $kroot)"; exit 2
fi
[ -n "$kernel" ] || { echo "missing a Debian kernel image (apt-get install linux-image-amd64)"; exit 2; }
kver=${kernel##*/vmlinuz-}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
initramfs="$work/initramfs"
mkdir -p "$initramfs"/{bin,mods,proc,sys,dev,newroot}
cp /bin/busybox "$initramfs/bin/busybox"
# In dependency order; a name with no module file is built in (6.12 builds
# in virtio and fscache, and btvirt needs af_alg, which 6.1 loads on its own
# from the host's modules but 6.12, whose modules the host lacks, cannot).
modules="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci rng-core virtio-rng netfs fscache 9pnet 9pnet_virtio 9p crc16 jitterentropy_rng drbg ecb cmac ecc rfkill ecdh_generic af_alg algif_hash algif_skcipher bluetooth hci_vhci"
for m in $modules; do
  file=$(find "$kroot/lib/modules/$kver" -name "$m.ko*" | head -n1)
  [ -n "$file" ] || continue # built in
  case "$file" in
    *.xz) xz -dc "$file" > "$initramfs/mods/$m.ko" ;;
    *.zst) zstd -qdc "$file" > "$initramfs/mods/$m.ko" ;;
    *) cp "$file" "$initramfs/mods/$m.ko" ;;
  esac
done
cat > "$initramfs/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
exec 0</dev/console 1>/dev/console 2>&1
for m in $modules; do [ -e /mods/\$m.ko ] && insmod /mods/\$m.ko; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 hostroot /newroot || poweroff -f
mount --move /proc /newroot/proc; mount --move /sys /newroot/sys; mount --move /dev /newroot/dev
exec switch_root /newroot /usr/bin/env bluetoothd_log=${VEIL_BLE_VM_BLUETOOTHD_LOG:-0} /bin/bash $here/stage2.sh $stage2
INIT
chmod +x "$initramfs/init"
(cd "$initramfs" && find . | cpio -o -H newc 2>/dev/null | gzip) > "$work/initramfs.cpio.gz"

timeout "${VEIL_VM_TIMEOUT:-900}" qemu-system-x86_64 -accel tcg -cpu qemu64 -m 1024 -smp 1 -nographic -no-reboot \
  -kernel "$kernel" -initrd "$work/initramfs.cpio.gz" -append "console=ttyS0 panic=-1" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap -nic none \
  -device virtio-rng-pci \
  </dev/null | stdbuf -o0 tr -d '\r' | tee "$work/console.log" | grep --line-buffered '^VM' || true
if ! grep -q '^VM-RESULT: pass' "$work/console.log"; then
  cp "$work/console.log" "${TMPDIR:-/tmp}/veil-ble-vm-console.log"
  echo "failed; the VM's console: ${TMPDIR:-/tmp}/veil-ble-vm-console.log"
  exit 1
fi
