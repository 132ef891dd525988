# Sourced by the guest scripts. A held folio pins the module until nobody
# reads it any more: the reaper ends such holds once they idled a second
# (checked every 100 ms), and per-CPU LRU batches keep a reference that
# looks like a reader's until they drain.

# Frees the skbs each CPU deferred (a TCP receiver on another CPU hands an
# skb, with its references to spliced folios, back to the CPU that
# allocated it, freed at that CPU's next network softirq): a loopback
# datagram from every CPU raises that softirq there.
ss_flush_deferred_skbs() {
	local c
	for c in $(seq 0 $(($(nproc --all) - 1))); do
		taskset -c "$c" bash -c 'echo > /dev/udp/127.0.0.1/9' 2>/dev/null || true
	done
}

# Waits (up to 10 s) until the module holds nothing; asks the module to
# reap idle holds at once (debugfs reap), and drains the LRU batches
# (drop_caches), frees deferred skbs and reaps again every 1.5 s while
# holds are left (a batch may take a reference after a drain, and an idle
# CPU keeps it and its deferred skbs). Status 0 once none is left, also
# when the module is not loaded.
ss_wait_holds_released() {
	local f=/sys/kernel/debug/stable_splice/holds_active i
	for i in $(seq 100); do
		[ -r $f ] || return 0
		[ $((i % 15)) = 1 ] && echo 1 >/sys/kernel/debug/stable_splice/reap
		[ "$(cat $f)" = 0 ] && return 0
		[ $((i % 15)) = 0 ] && echo 1 >/proc/sys/vm/drop_caches && ss_flush_deferred_skbs
		sleep 0.1
	done
	echo "#   holds still active after 10 s: $(cat $f)"
	sed 's/^/#   /' /sys/kernel/debug/stable_splice/holds | head -20
	return 1
}

# rmmod once nothing is held any more.
ss_rmmod() {
	ss_wait_holds_released
	rmmod stable_splice
}

# insmod of the module under test with the guest's parameters
# ($SS_KO_PARAMS, set by guest.sh) followed by the caller's.
ss_insmod() {
	insmod "$SS_KO" $SS_KO_PARAMS "$@"
}
