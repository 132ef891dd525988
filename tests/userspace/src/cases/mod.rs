//! Case registry and the context handed to each case.

use crate::util::TResult;

mod basic;
mod contract_stress;
mod e2e;
mod entry_gate;
mod exerciser;
mod fault_injection;
mod holds;
mod mode;
mod samba;
mod signed;
mod security;
mod signals;
mod socket_sink;
mod snapshot;
mod stress;
mod uring_splice;

/// Which module state a case checks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Only with the module loaded (--expect-module).
    Module,
    /// Only without the module (--expect-no-module): upstream behaviour.
    NoModule,
    /// Both: behaviour that must be the same either way.
    Any,
}

impl Needs {
    pub fn label(self) -> &'static str {
        match self {
            Needs::Module => "module",
            Needs::NoModule => "no-module",
            Needs::Any => "any",
        }
    }
}

pub struct Case {
    pub name: &'static str,
    pub needs: Needs,
    /// Extra seconds on top of the default timeout (stress runs).
    pub long: bool,
    pub func: fn(&Ctx) -> TResult,
}

/// Per-case context; lives in the forked case process.
pub struct Ctx {
    pub dir: String,
    pub expect_module: bool,
    pub stress_secs: u64,
    /// Write end of the result channel to the runner.
    pub out: i32,
}

impl Ctx {
    /// Diagnostic line printed by the runner as a TAP comment. Sent at once
    /// so progress is visible even if the case later hangs.
    pub fn note(&self, msg: impl AsRef<str>) {
        let line = format!("N {}\n", msg.as_ref().replace('\n', " "));
        // SAFETY: out is the runner's pipe, open for the life of the case;
        // a short or failed write only loses a diagnostic.
        unsafe { libc::write(self.out, line.as_ptr().cast(), line.len()) };
    }
}

/// A case, named after its function (`long`: a stress run's timeout).
macro_rules! case {
    (long $needs:ident, $($f:ident)::+) => {
        Case { name: case!(@name $($f)::+), needs: $needs, long: true, func: $($f)::+ }
    };
    ($needs:ident, $($f:ident)::+) => {
        Case { name: case!(@name $($f)::+), needs: $needs, long: false, func: $($f)::+ }
    };
    (@name $m:ident :: $f:ident) => { stringify!($f) };
    (@name $f:ident) => { stringify!($f) };
}

pub fn all() -> Vec<Case> {
    use Needs::*;
    vec![
        case!(NoModule, basic::flag_einval_without_module),
        case!(Any, basic::unknown_flag_einval),
        case!(Module, basic::stable_flag_accepted),
        case!(Module, basic::registers_preserved),
        case!(Module, basic::mark_bit_without_flag_is_plain),
        case!(Any, basic::metzmacher_plain),
        case!(Module, basic::metzmacher_stable),
        case!(Module, snapshot::snapshot_pwrite),
        case!(Module, snapshot::snapshot_write),
        case!(Module, snapshot::snapshot_writev),
        case!(Module, snapshot::snapshot_mmap_after_splice),
        case!(Module, snapshot::snapshot_mmap_dirty_before_splice),
        // Long: ftrace matches each name of the filter against every
        // traceable function, at each start; five names on Debian's
        // kernel under TCG take 17-23 s of a case.
        case!(long Module, snapshot::snapshot_beside_function_tracer),
        case!(long Module, snapshot::snapshot_beside_function_graph),
        case!(long Module, snapshot::snapshot_beside_kretprobes),
        case!(Module, snapshot::snapshot_ftruncate_zero),
        case!(Module, snapshot::snapshot_ftruncate_mid_page),
        case!(Module, snapshot::snapshot_punch_hole),
        case!(Module, snapshot::snapshot_odirect),
        case!(Module, snapshot::snapshot_direct_read_into_mapping),
        case!(Module, snapshot::snapshot_direct_read_into_dirty_mapping),
        case!(Module, snapshot::snapshot_splice_into_file),
        case!(Any, snapshot::plain_splice_into_file),
        case!(Module, snapshot::snapshot_copy_file_range),
        case!(Any, snapshot::plain_copy_file_range),
        case!(Module, snapshot::snapshot_proc_mem_write),
        case!(Module, snapshot::snapshot_proc_mem_write_dirty_mapping),
        case!(Any, snapshot::plain_proc_mem_write),
        case!(Module, snapshot::snapshot_unlink_close),
        case!(Module, snapshot::snapshot_io_uring_write),
        case!(Module, uring_splice::io_uring_splice_stable),
        case!(NoModule, uring_splice::io_uring_splice_einval_without_module),
        case!(Any, uring_splice::io_uring_splice_unknown_flag),
        case!(Module, uring_splice::io_uring_splice_pipe_source_einval),
        case!(Any, socket_sink::socket_sink_plain_shows_overwrite),
        case!(Module, socket_sink::socket_sink_snapshot),
        case!(Module, snapshot::snapshot_tee),
        case!(Module, snapshot::snapshot_through_overlayfs),
        case!(Module, snapshot::snapshot_pipe_to_pipe),
        case!(Module, snapshot::large_8mib),
        case!(Module, security::bounded_writer_same_process),
        case!(Module, security::bounded_writer_other_process),
        case!(Module, security::dirty_pipe_no_write_path),
        case!(Module, security::unprivileged_reader),
        case!(Module, basic::bad_input),
        case!(Module, signals::signal_eintr),
        case!(Module, signals::signal_restart_keeps_flag),
        case!(Module, basic::counters_zero_after_close),
        case!(Module, holds::holds_socket_partial_read),
        case!(Module, holds::holds_socket_partial_close),
        case!(Module, holds::holds_socket_partial_devnull),
        case!(Any, holds::plain_socket_partial_read),
        case!(Module, holds::holds_reap_while_pipe_reads),
        case!(Module, holds::holds_reap_while_socket_reads),
        case!(Module, holds::holds_reap_while_tee_reads),
        case!(Module, holds::holds_reap_while_mapped),
        case!(Any, holds::plain_reap_while_pipe_reads),
        case!(Module, holds::holds_socket_consumer_first),
        case!(Any, holds::plain_socket_consumer_first),
        case!(Module, holds::holds_warm_file_zero_copy),
        case!(Module, holds::holds_fresh_pages_zero_copy),
        case!(Module, mode::file_info),
        case!(Module, holds::holds_overlapping_splices),
        case!(Any, holds::plain_overlapping_splices),
        case!(Module, holds::holds_zeroing),
        case!(Module, holds::holds_zeroing_chattr_j),
        case!(Module, holds::holds_zeroing_chattr_j_while_held),
        case!(Module, holds::holds_ext4_move_extent),
        case!(Module, holds::holds_ext4_inline_data),
        case!(Any, holds::plain_zeroing),
        case!(Module, holds::holds_shift_ranges),
        case!(Any, holds::plain_shift_ranges),
        case!(Module, holds::holds_splice_back_shifted),
        case!(Any, holds::plain_splice_back_shifted),
        case!(Module, holds::holds_truncate_vs_writeback),
        case!(Any, holds::plain_truncate_vs_writeback),
        case!(Module, fault_injection::holds_break_without_memory),
        case!(long Module, fault_injection::holds_break_under_allocation_failures),
        case!(Module, fault_injection::holds_split_without_memory),
        case!(Module, fault_injection::holds_split_over_memory_limit),
        case!(Module, fault_injection::holds_split_window_races),
        case!(Module, fault_injection::holds_split_window_reheld),
        case!(Module, fault_injection::holds_split_window_sync),
        case!(Module, fault_injection::holds_break_window_fsync),
        case!(Module, fault_injection::holds_split_refused_by_reader),
        case!(Module, fault_injection::holds_break_buffers_busy),
        case!(Module, fault_injection::holds_break_dirtied_after_every_writeback),
        case!(Module, fault_injection::splice_copy_without_memory),
        case!(Module, fault_injection::splice_copy_run_without_memory),
        case!(Module, holds::holds_io_uring_prep_pins_module),
        case!(Module, holds::holds_reaped_release_module),
        case!(Module, holds::holds_debugfs_report),
        case!(Module, holds::holds_other_files_writers_skip_lookup),
        case!(Module, holds::holds_end_with_evicted_inode),
        case!(Module, holds::holds_entries_outlive_readers),
        case!(Module, holds::holds_entries_shrink_with_page_cache),
        case!(Module, holds::holds_end_after_tcp_to_other_cpu),
        case!(Module, holds::holds_dirty_break_moves_state),
        case!(Module, holds::holds_clean_break_moves_state),
        case!(Module, holds::holds_break_keeps_page_hot),
        case!(Module, holds::holds_stale_entry_new_folio),
        case!(Module, holds::holds_pipe_source_dup2_race),
        case!(long Module, holds::holds_splice_storm),
        case!(long Module, exerciser::holds_exerciser),
        case!(long Module, holds::holds_writer_race),
        case!(long Any, holds::plain_writer_race),
        case!(long Module, holds::holds_mmap_writer_race),
        case!(long Any, holds::plain_mmap_writer_race),
        case!(Module, holds::holds_split_break_keeps_dirty_pages),
        case!(long Module, holds::holds_large_writer_race),
        case!(long Any, holds::plain_large_writer_race),
        case!(long Module, holds::holds_large_mmap_writer_race),
        case!(long Module, holds::holds_large_truncate_race),
        case!(long Module, signed::signed_reads_af_alg),
        case!(long Any, signed::plain_signed_reads_af_alg),
        case!(long Module, signed::signed_reads_io_uring),
        case!(long Any, signed::plain_signed_reads_io_uring),
        case!(Module, mode::mode_inherited),
        case!(Module, mode::mode_self_only),
        case!(Module, mode::mode_reaches_only_members),
        case!(Module, mode::mode_splice_without_flag),
        case!(Any, mode::plain_mode_splice_without_flag),
        case!(long Module, mode::mode_sendfile_socket),
        case!(long Any, mode::plain_mode_sendfile_socket),
        case!(Module, mode::mode_io_uring_splice),
        case!(Any, mode::plain_mode_io_uring_splice),
        case!(Module, mode::mode_pipe_source_unchanged),
        case!(Module, entry_gate::entries_back_after_idle),
        case!(Any, entry_gate::plain_entries_back_after_idle),
        case!(long Module, entry_gate::entries_idle_race),
        case!(long Any, entry_gate::plain_entries_idle_race),
        case!(long Module, entry_gate::entries_idle_on_their_own),
        case!(Module, mode::mode_tool),
        case!(NoModule, mode::mode_tool_without_module),
        // end to end (--e2e): nginx from Debian, curl
        case!(long Module, e2e::e2e_nginx_stalled_client),
        case!(long Module, e2e::plain_e2e_nginx_stalled_client),
        case!(long Module, e2e::e2e_curl_rewrite),
        case!(long Module, e2e::plain_e2e_curl_rewrite),
        // end to end (--e2e): Samba's smbd from Debian with sendfile, smbclient
        case!(long Module, samba::e2e_smb_stalled_client),
        case!(long Module, samba::plain_e2e_smb_stalled_client),
        case!(long Module, samba::e2e_smbclient_rewrite),
        case!(long Module, samba::plain_e2e_smbclient_rewrite),
        case!(long Module, samba::e2e_smb_client_killed),
        case!(long Module, samba::e2e_smb_truncated_under_read),
        case!(long Module, stress::torn_read_stress),
        case!(long Module, contract_stress::contract_stress),
        case!(long Module, contract_stress::contract_stress_reaping),
    ]
}

/// Cases that exercise the runner itself (timeout, panic, crash); only
/// listed when STABLE_SPLICE_TESTS_SELFTEST=1, and expected to fail.
pub fn runner_selftest() -> Vec<Case> {
    fn selftest_hang(_: &Ctx) -> TResult {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        Ok(())
    }
    fn selftest_panic(_: &Ctx) -> TResult {
        panic!("deliberate panic");
    }
    fn selftest_crash(_: &Ctx) -> TResult {
        // SAFETY: kill has no memory preconditions; it ends this case process
        // the way a crash would.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        Ok(())
    }
    use Needs::*;
    vec![case!(Any, selftest_hang), case!(Any, selftest_panic), case!(Any, selftest_crash)]
}
