#!/usr/bin/env bash
# Host tuning for benchmark runs on bare metal, reversible.
#
#   scripts/host-tune.sh apply --proxy-cpus 2-3 [--governor performance] [--hugepages 512]
#   scripts/host-tune.sh status
#   scripts/host-tune.sh undo
#
# apply:  sets every CPU's cpufreq governor (default performance), moves
#         every movable IRQ's affinity onto the CPUs outside --proxy-cpus,
#         and, with --hugepages N, reserves N 2 MiB huge pages (for DPDK).
#         Each change is printed, and the value it replaced is saved to the
#         state file first.
# undo:   writes the saved values back, in reverse order, and removes the
#         state file.
# status: prints the current values and whether a state file exists.
#
# SYSROOT (default empty) prefixes /sys and /proc, so tests run against a
# fake tree; STATE (default /var/lib/proxylab/host-tune.state) is the state
# file. An IRQ the kernel refuses to move (per-CPU timers and the like) is
# reported and skipped; irqbalance, if running, would undo the IRQ moves, so
# apply says so (it does not stop services).
set -euo pipefail

SYSROOT=${SYSROOT:-}
STATE=${STATE:-/var/lib/proxylab/host-tune.state}
CPUDIR=$SYSROOT/sys/devices/system/cpu
IRQDIR=$SYSROOT/proc/irq
HUGE=$SYSROOT/proc/sys/vm/nr_hugepages

die() { echo "host-tune: $*" >&2; exit 2; }

# expand "0-2,5" to "0 1 2 5"
expand() {
	local out=() part
	IFS=, read -ra parts <<<"$1"
	for part in "${parts[@]}"; do
		[[ $part =~ ^([0-9]+)(-([0-9]+))?$ ]] || die "bad CPU list '$1'"
		local a=${BASH_REMATCH[1]} b=${BASH_REMATCH[3]:-${BASH_REMATCH[1]}}
		((a <= b)) || die "bad CPU range '$part'"
		for ((i = a; i <= b; i++)); do out+=("$i"); done
	done
	echo "${out[@]}"
}

# set FILE VALUE: save the old value to the state file, write the new one.
set_value() {
	local file=$1 value=$2 old
	old=$(cat "$file")
	if [[ $old == "$value" ]]; then
		echo "  $file: already $value"
		return
	fi
	if ! echo "$value" >"$file" 2>/dev/null; then
		echo "  $file: kernel refused $value (kept $old)"
		return
	fi
	printf '%s\t%s\n' "$file" "$old" >>"$STATE"
	echo "  $file: $old -> $value"
}

apply() {
	local proxy="" governor=performance hugepages=""
	while (($#)); do
		case $1 in
		--proxy-cpus) proxy=${2:?}; shift 2 ;;
		--governor) governor=${2:?}; shift 2 ;;
		--hugepages) hugepages=${2:?}; shift 2 ;;
		*) die "unknown option $1" ;;
		esac
	done
	[[ -n $proxy ]] || die "apply needs --proxy-cpus (the CPUs to keep IRQs away from)"
	[[ -e $STATE ]] && die "$STATE exists: a previous apply was not undone (run undo first)"
	[[ $hugepages =~ ^[0-9]*$ ]] || die "bad --hugepages '$hugepages'"

	# Validate everything before the first write. expand runs in a
	# subshell, so its failure must be checked here.
	local online=() keep=() c p list
	list=$(expand "$(cat "$CPUDIR/online")") || exit 2
	read -ra online <<<"$list"
	list=$(expand "$proxy") || exit 2
	local -A isproxy=()
	for p in $list; do isproxy[$p]=1; done
	for c in "${online[@]}"; do [[ -n ${isproxy[$c]:-} ]] || keep+=("$c"); done
	((${#keep[@]})) || die "--proxy-cpus $proxy leaves no online CPU for IRQs (online: ${online[*]})"
	mkdir -p "$(dirname "$STATE")"
	: >"$STATE"
	local irqcpus
	irqcpus=$(IFS=,; echo "${keep[*]}")

	echo "governor -> $governor"
	local found=0 g
	for g in "$CPUDIR"/cpu[0-9]*/cpufreq/scaling_governor; do
		[[ -e $g ]] || continue
		found=1
		set_value "$g" "$governor"
	done
	((found)) || echo "  no cpufreq on this host: skipped"

	echo "IRQ affinity -> CPUs $irqcpus (away from proxy CPUs $proxy)"
	found=0
	local f
	for f in "$IRQDIR"/[0-9]*/smp_affinity_list; do
		[[ -e $f ]] || continue
		found=1
		set_value "$f" "$irqcpus"
	done
	((found)) || echo "  no movable IRQs: skipped"
	if pgrep -x irqbalance >/dev/null 2>&1; then
		echo "  note: irqbalance is running and will move IRQs back; stop it for the run"
	fi

	if [[ -n $hugepages ]]; then
		echo "huge pages -> $hugepages"
		set_value "$HUGE" "$hugepages"
		echo "  now $(cat "$HUGE") reserved"
	fi
	echo "saved previous values to $STATE; 'scripts/host-tune.sh undo' restores them"
}

undo() {
	[[ -e $STATE ]] || die "no $STATE: nothing to undo"
	local file old
	tac "$STATE" | while IFS=$'\t' read -r file old; do
		if echo "$old" >"$file" 2>/dev/null; then
			echo "  $file: restored $old"
		else
			echo "  $file: could not restore $old" >&2
		fi
	done
	rm -f "$STATE"
	echo "undone"
}

status() {
	local g
	for g in "$CPUDIR"/cpu[0-9]*/cpufreq/scaling_governor; do
		[[ -e $g ]] && echo "$g: $(cat "$g")"
	done
	echo "IRQs: $(cat "$IRQDIR"/[0-9]*/smp_affinity_list 2>/dev/null | sort | uniq -c | awk '{printf "%s on CPUs %s; ", $1, $2}')"
	[[ -e $HUGE ]] && echo "huge pages: $(cat "$HUGE")"
	if [[ -e $STATE ]]; then echo "applied: $(wc -l <"$STATE") saved values in $STATE"; else echo "not applied"; fi
}

case ${1:-} in
apply) shift; apply "$@" ;;
undo) undo ;;
status) status ;;
*) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
