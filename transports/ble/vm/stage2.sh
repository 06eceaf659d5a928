#!/bin/bash
# Runs inside the BLE test VM, on the host's root mounted read-only: real
# BlueZ (bluetoothd) over two virtual controllers sharing one virtual air
# (btvirt), then the checks. Prints "VM-RESULT: pass" or "VM-RESULT: fail
# <why>" on the console, then powers the VM off.
#
# `stage2.sh radio TOOL PINGS BULK`: the radio layer and a veil link
# (veil-ble-radio). `stage2.sh pair PROGRAM COUNT FAULTS GATT_ONLY`: two veil nodes, one per
# adapter, under the offline policy (veil-ble-pair).
set -u
mode="$1"
if [ "$mode" = pair ]; then
  pair="$2" count="${3:-50}" faults="${4:-remove,power,bluetoothd}" gatt_only="${5:-0}"
else
  radio="$2"
  # Pings over the veil link, and bytes sent over a bare channel after them.
  pings="${3:-10}" bulk="${4:-0}"
fi
fail() { echo "VM-RESULT: fail $*"; tail -n 12 /run/bluetoothd.log 2>/dev/null | sed "s/^/VM bluetoothd: /"; poweroff -f; }
# Waits until "$@" succeeds, checking every 0.2 s, at most 600 times: a
# bound for a slow emulated machine on a busy core, never a pause.
wait_for() {
  for _ in $(seq 600); do "$@" && return 0; sleep 0.2; done
  return 1
}
# Writable scratch space on the read-only root. Not /tmp: the checkout (and
# the tool the checks run) may live there.
mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/lib/bluetooth || fail "mounts"
mkdir -p /run/dbus
dbus-daemon --system --fork || fail "no system bus"
# The first virtual controller after boot usually fails its reset
# (hci0: Opcode 0x0c03 failed: -110): take it with a throwaway btvirt.
btvirt -L -l1 >/dev/null 2>&1 & throwaway=$!
wait_for test -e /sys/class/bluetooth/hci0 || true
kill "$throwaway"; wait "$throwaway" 2>/dev/null
wait_for test ! -e /sys/class/bluetooth/hci0 || fail "the throwaway controller stayed"
# Both controllers from one btvirt, so they share the air (the pair's
# `remove` fault kills it and starts the same command again).
btvirt -L -l3 >/dev/null 2>&1 &
controllers() { [ "$(ls /sys/class/bluetooth | wc -l)" -ge 2 ]; }
wait_for controllers || fail "btvirt made no controllers"
# LE privacy, as veil asks of every machine (docs/TRANSPORTS.md, "BLE"):
# the adapters advertise and connect from resolvable private addresses
# that change, not from their fixed public ones.
printf '[General]\nPrivacy = device\n[GATT]\nChannels = 1\n' >/run/main.conf
# With VEIL_BLE_VM_BLUETOOTHD_LOG=1 (run.sh), its debug log on the console
# as it comes, to see what it did when a run stops.
debug=""
[ "${bluetoothd_log:-0}" = 1 ] && debug=-d
bluetoothd=(/usr/libexec/bluetooth/bluetoothd -n $debug -f /run/main.conf)
touch /run/bluetoothd.log
[ -n "$debug" ] && { tail -F /run/bluetoothd.log 2>/dev/null | sed -u 's/^/VM bluetoothd: /' & }

if [ "$mode" = pair ]; then
  # Each node on its own adapter: the two btvirt made (the throwaway took
  # hci0). bluetoothd registers them once it runs.
  adapters=$(ls /sys/class/bluetooth | grep -v '^hci0$' | sort | head -n 2 | tr '\n' ' ')
  set -- $adapters
  [ $# -eq 2 ] || fail "two adapters wanted, got: $adapters"
  # bluetoothd powers them on itself, after switching LE privacy on (which
  # a powered adapter refuses): no btmgmt here.
  mkdir -p /run/pair
  # The program runs bluetoothd itself, as a service manager would (its
  # output appended to /run/bluetoothd.log), and restarts it
  # mid-conversation. Its log and its lines go to the console as they
  # come: a kernel that stops leaves them.
  { VEIL_PAIR_FAULTS="$faults" VEIL_PAIR_GATT_ONLY="$gatt_only" VEIL_PAIR_BTVIRT="btvirt -L -l3" VEIL_PAIR_BLUETOOTHD_LOG=/run/bluetoothd.log \
      "$pair" /run/pair "$1" "$2" "$count" "${bluetoothd[@]}" 2>&1 | tee /run/pair.log | sed -u 's/^/VM log: /'; } &
  program=$!
  finished() { ! kill -0 "$program" 2>/dev/null; }
  # The program bounds its own waits; this bounds the program (10 min).
  for _ in 1 2 3 4 5; do wait_for finished && break; done
  finished || fail "the pair never finished: $(cat /run/pair.log)"
  grep '^pair: ' /run/pair.log | sed 's/^/VM /'
  grep -q '^pair: pass' /run/pair.log || fail "the pair failed"
  echo "VM-RESULT: pass"
  poweroff -f
fi

"${bluetoothd[@]}" >>/run/bluetoothd.log 2>&1 &
# The throwaway took hci0: the two controllers are the next ones.
ready() { "$radio" | grep -q '^BLE ready on hci'; }
wait_for ready || fail "never ready: $("$radio")"
line=$("$radio")
echo "VM: $line"
adapter=$(echo "$line" | sed -n 's/^BLE ready on \(hci[0-9]*\).*/\1/p')
index=${adapter#hci}

"$radio" --follow >/run/follow.log 2>&1 &
# Whether the follower printed "$1" at least "$2" times.
seen() { [ "$(grep -c "$1" /run/follow.log 2>/dev/null)" -ge "$2" ]; }
wait_for seen "BLE ready on $adapter" 1 || fail "follow: $(cat /run/follow.log)"
btmgmt --index "$index" power off >/dev/null || fail "btmgmt power off"
wait_for seen "adapter $adapter is powered off" 1 || fail "power off not seen: $(cat /run/follow.log)"
btmgmt --index "$index" power on >/dev/null || fail "btmgmt power on"
wait_for seen "BLE ready on $adapter" 2 || fail "power on not seen: $(cat /run/follow.log)"
sed 's/^/VM follow: /' /run/follow.log

# Over the air: one controller advertises a fresh token, another, scanning,
# sees exactly that token. (A controller whose reset failed is in sysfs but
# not in BlueZ: each other one is tried in turn.)
"$radio" --advertise --adapter "$adapter" >/run/advertise.log 2>&1 & advertiser=$!
wait_for grep -q '^advertising ' /run/advertise.log || fail "advertise: $(cat /run/advertise.log)"
token=$(sed -n 's/^advertising \([0-9a-f]*\)$/\1/p' /run/advertise.log)
scanned=""
for other in $(ls /sys/class/bluetooth | grep -v "^$adapter\$"); do
  btmgmt --index "${other#hci}" power on >/dev/null 2>&1
  "$radio" --scan --adapter "$other" >"/run/scan-$other.log" 2>&1 & scanner=$!
  wait_for grep -q -e "^seen $token from " -e '^not scanning' "/run/scan-$other.log"
  kill "$scanner" 2>/dev/null
  if grep -q "^seen $token from " "/run/scan-$other.log"; then scanned=$other; break; fi
  echo "VM: $other: $(cat "/run/scan-$other.log")"
done
[ -n "$scanned" ] || fail "no controller saw $token"
echo "VM: $adapter advertised $token; $scanned $(grep "^seen $token" "/run/scan-$scanned.log" | head -1)"
kill "$advertiser" 2>/dev/null

# A veil link over L2CAP (the ble plug-in: Noise and yamux on an LE
# connection-oriented channel): the scanner connects to the advertiser it
# sees and pings it (then, for the bench, sends a bulk transfer).
"$radio" --advertise --link --adapter "$adapter" >/run/answer.log 2>&1 &
wait_for grep -q '^listening ' /run/answer.log || fail "listen: $(cat /run/answer.log)"
# The scanner's BlueZ still knows the first advertisement (its token, and
# a private address that may have changed since): it must pick this one.
wanted=$(sed -n 's/^advertising \([0-9a-f]*\)$/\1/p' /run/answer.log)
"$radio" --scan --link --want "$wanted" --count "$pings" --bulk "$bulk" --adapter "$scanned" >/run/call.log 2>&1 & caller=$!
called() { ! kill -0 "$caller" 2>/dev/null; }
wait_for called || fail "the call never ended: $(cat /run/call.log)"
sed 's/^/VM link: /' /run/call.log
sed 's/^/VM answer: /' /run/answer.log
[ "$(grep -c '^ping ' /run/call.log)" -eq "$pings" ] || fail "not $pings pings over L2CAP"
[ "$bulk" -eq 0 ] || grep -q '^bulk [0-9]* bytes in ' /run/call.log || fail "no bulk transfer"

# The same over veil's GATT service (the link for controllers without
# L2CAP channels): writes one way, notifications the other.
"$radio" --scan --link --gatt --want "$wanted" --count "$pings" --adapter "$scanned" >/run/gatt.log 2>&1 & caller=$!
wait_for called || fail "the GATT call never ended: $(cat /run/gatt.log)"
sed 's/^/VM gatt: /' /run/gatt.log
[ "$(grep -c '^ping ' /run/gatt.log)" -eq "$pings" ] || fail "not $pings pings over GATT"
echo "VM-RESULT: pass"
poweroff -f
