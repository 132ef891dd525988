//! Case registry and the context handed to each case.

use crate::util::TResult;

mod basic;
mod contract_stress;
mod e2e;
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

const fn case(name: &'static str, needs: Needs, func: fn(&Ctx) -> TResult) -> Case {
    Case { name, needs, long: false, func }
}

pub fn all() -> Vec<Case> {
    use Needs::*;
    vec![
        case("flag_einval_without_module", NoModule, basic::flag_einval_without_module),
        case("unknown_flag_einval", Any, basic::unknown_flag_einval),
        case("stable_flag_accepted", Module, basic::stable_flag_accepted),
        case("registers_preserved", Module, basic::registers_preserved),
        case("mark_bit_without_flag_is_plain", Module, basic::mark_bit_without_flag_is_plain),
        case("metzmacher_plain", Any, basic::metzmacher_plain),
        case("metzmacher_stable", Module, basic::metzmacher_stable),
        case("snapshot_pwrite", Module, snapshot::pwrite),
        case("snapshot_write", Module, snapshot::write),
        case("snapshot_writev", Module, snapshot::writev),
        case("snapshot_mmap_after_splice", Module, snapshot::mmap_after_splice),
        case("snapshot_mmap_dirty_before_splice", Module, snapshot::mmap_dirty_before_splice),
        case("snapshot_beside_function_tracer", Module, snapshot::beside_function_tracer),
        case("snapshot_ftruncate_zero", Module, snapshot::ftruncate_zero),
        case("snapshot_ftruncate_mid_page", Module, snapshot::ftruncate_mid_page),
        case("snapshot_punch_hole", Module, snapshot::punch_hole),
        case("snapshot_odirect", Module, snapshot::odirect),
        case("snapshot_unlink_close", Module, snapshot::unlink_close),
        case("snapshot_io_uring_write", Module, snapshot::io_uring_write),
        case("io_uring_splice_stable", Module, uring_splice::io_uring_splice_stable),
        case("io_uring_splice_einval_without_module", NoModule, uring_splice::io_uring_splice_einval_without_module),
        case("io_uring_splice_unknown_flag", Any, uring_splice::io_uring_splice_unknown_flag),
        case("io_uring_splice_pipe_source_einval", Module, uring_splice::io_uring_splice_pipe_source_einval),
        case("socket_sink_plain_shows_overwrite", Any, socket_sink::socket_sink_plain_shows_overwrite),
        case("socket_sink_snapshot", Module, socket_sink::socket_sink_snapshot),
        case("snapshot_tee", Module, snapshot::tee),
        case("snapshot_pipe_to_pipe", Module, snapshot::pipe_to_pipe),
        case("large_8mib", Module, snapshot::large_8mib),
        case("bounded_writer_same_process", Module, security::bounded_writer_same_process),
        case("bounded_writer_other_process", Module, security::bounded_writer_other_process),
        case("dirty_pipe_no_write_path", Module, security::dirty_pipe_no_write_path),
        case("unprivileged_reader", Module, security::unprivileged_reader),
        case("bad_input", Module, basic::bad_input),
        case("signal_eintr", Module, signals::signal_eintr),
        case("signal_restart_keeps_flag", Module, signals::signal_restart_keeps_flag),
        case("counters_zero_after_close", Module, basic::counters_zero_after_close),
        case("holds_socket_partial_read", Module, holds::holds_socket_partial_read),
        case("holds_socket_partial_close", Module, holds::holds_socket_partial_close),
        case("holds_socket_partial_devnull", Module, holds::holds_socket_partial_devnull),
        case("plain_socket_partial_read", Any, holds::plain_socket_partial_read),
        case("holds_socket_consumer_first", Module, holds::holds_socket_consumer_first),
        case("plain_socket_consumer_first", Any, holds::plain_socket_consumer_first),
        case("holds_warm_file_zero_copy", Module, holds::holds_warm_file_zero_copy),
        case("file_info", Module, mode::file_info),
        case("holds_overlapping_splices", Module, holds::holds_overlapping_splices),
        case("plain_overlapping_splices", Any, holds::plain_overlapping_splices),
        case("holds_zeroing", Module, holds::holds_zeroing),
        case("holds_zeroing_chattr_j", Module, holds::holds_zeroing_chattr_j),
        case("holds_zeroing_chattr_j_while_held", Module, holds::holds_zeroing_chattr_j_while_held),
        case("plain_zeroing", Any, holds::plain_zeroing),
        case("holds_truncate_vs_writeback", Module, holds::holds_truncate_vs_writeback),
        case("plain_truncate_vs_writeback", Any, holds::plain_truncate_vs_writeback),
        case("holds_break_without_memory", Module, fault_injection::holds_break_without_memory),
        Case { name: "holds_break_under_allocation_failures", needs: Module, long: true, func: fault_injection::holds_break_under_allocation_failures },
        case("holds_io_uring_prep_pins_module", Module, holds::holds_io_uring_prep_pins_module),
        case("holds_reaped_release_module", Module, holds::holds_reaped_release_module),
        case("holds_pipe_source_dup2_race", Module, holds::holds_pipe_source_dup2_race),
        case("holds_splice_storm", Module, holds::holds_splice_storm),
        Case { name: "holds_exerciser", needs: Module, long: true, func: exerciser::holds_exerciser },
        Case { name: "holds_writer_race", needs: Module, long: true, func: holds::holds_writer_race },
        Case { name: "plain_writer_race", needs: Any, long: true, func: holds::plain_writer_race },
        Case { name: "signed_reads_af_alg", needs: Module, long: true, func: signed::signed_reads_af_alg },
        Case { name: "plain_signed_reads_af_alg", needs: Any, long: true, func: signed::plain_signed_reads_af_alg },
        Case { name: "signed_reads_io_uring", needs: Module, long: true, func: signed::signed_reads_io_uring },
        Case { name: "plain_signed_reads_io_uring", needs: Any, long: true, func: signed::plain_signed_reads_io_uring },
        case("mode_inherited", Module, mode::mode_inherited),
        case("mode_self_only", Module, mode::mode_self_only),
        case("mode_splice_without_flag", Module, mode::mode_splice_without_flag),
        case("plain_mode_splice_without_flag", Any, mode::plain_mode_splice_without_flag),
        Case { name: "mode_sendfile_socket", needs: Module, long: true, func: mode::mode_sendfile_socket },
        Case { name: "plain_mode_sendfile_socket", needs: Any, long: true, func: mode::plain_mode_sendfile_socket },
        case("mode_io_uring_splice", Module, mode::mode_io_uring_splice),
        case("plain_mode_io_uring_splice", Any, mode::plain_mode_io_uring_splice),
        case("mode_pipe_source_unchanged", Module, mode::mode_pipe_source_unchanged),
        case("mode_tool", Module, mode::mode_tool),
        case("mode_tool_without_module", NoModule, mode::mode_tool_without_module),
        // end to end (--e2e): nginx from Debian, curl
        Case { name: "e2e_nginx_stalled_client", needs: Module, long: true, func: e2e::e2e_nginx_stalled_client },
        Case { name: "plain_e2e_nginx_stalled_client", needs: Module, long: true, func: e2e::plain_e2e_nginx_stalled_client },
        Case { name: "e2e_curl_rewrite", needs: Module, long: true, func: e2e::e2e_curl_rewrite },
        Case { name: "plain_e2e_curl_rewrite", needs: Module, long: true, func: e2e::plain_e2e_curl_rewrite },
        // end to end (--e2e): Samba's smbd from Debian with sendfile, smbclient
        Case { name: "e2e_smb_stalled_client", needs: Module, long: true, func: samba::e2e_smb_stalled_client },
        Case { name: "plain_e2e_smb_stalled_client", needs: Module, long: true, func: samba::plain_e2e_smb_stalled_client },
        Case { name: "e2e_smbclient_rewrite", needs: Module, long: true, func: samba::e2e_smbclient_rewrite },
        Case { name: "plain_e2e_smbclient_rewrite", needs: Module, long: true, func: samba::plain_e2e_smbclient_rewrite },
        Case { name: "e2e_smb_client_killed", needs: Module, long: true, func: samba::e2e_smb_client_killed },
        Case { name: "e2e_smb_truncated_under_read", needs: Module, long: true, func: samba::e2e_smb_truncated_under_read },
        Case { name: "torn_read_stress", needs: Module, long: true, func: stress::torn_read_stress },
        Case { name: "contract_stress", needs: Module, long: true, func: contract_stress::contract_stress },
    ]
}

/// Cases that exercise the runner itself (timeout, panic, crash); only
/// listed when STABLE_SPLICE_TESTS_SELFTEST=1, and expected to fail.
pub fn runner_selftest() -> Vec<Case> {
    fn hang(_: &Ctx) -> TResult {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        Ok(())
    }
    fn panics(_: &Ctx) -> TResult {
        panic!("deliberate panic");
    }
    fn crash(_: &Ctx) -> TResult {
        // SAFETY: kill has no memory preconditions; it ends this case process
        // the way a crash would.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        Ok(())
    }
    vec![
        case("selftest_hang", Needs::Any, hang),
        case("selftest_panic", Needs::Any, panics),
        case("selftest_crash", Needs::Any, crash),
    ]
}
