//! End to end with Samba from Debian's packages (scripts/setup-samba): an
//! smbd serving the scratch directory to an unsigned, unencrypted guest
//! session with `use sendfile = yes`, with and without `stable-splice exec`,
//! and Debian's smbclient as the client.
//!
//! smbd answers an SMB2 READ with sendfile() only when the request is not
//! signed, not encrypted, not part of a compound and not taken by the
//! asynchronous read path (`aio read size = 0` keeps that path out of the
//! way); the cases prove from the module's counters that the reads really
//! went through sendfile in the mode.

use super::e2e::{downloads_while_rewritten, free_port, served_name, version_page, WmemMax};
use super::mode::tool;
use super::Ctx;
use crate::util::*;
use std::io::Read;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIG: usize = 16 << 20;
const SMBD: &str = "/usr/sbin/smbd";
const SMBCLIENT: &str = "/usr/bin/smbclient";

/// A running smbd serving a case's directory as share `t` on 127.0.0.1:`port`, in a
/// process group of its own; the group is killed when dropped.
pub(super) struct Smbd {
    pub dir: String,
    pub port: u16,
    child: Child,
}

impl Smbd {
    /// Serves the case's directory. `sndbuf`: SO_SNDBUF of smbd's sockets
    /// (bytes), if not the default. Notes how long smbd took to answer.
    pub fn start(ctx: &Ctx, stable: bool, sndbuf: Option<usize>) -> TResult<Self> {
        let root = &ctx.dir;
        ensure!(
            std::path::Path::new(SMBD).exists() && std::path::Path::new(SMBCLIENT).exists(),
            "no {SMBD} or {SMBCLIENT}: scripts/setup installs Debian's samba and smbclient (scripts/setup-samba)"
        );
        let dir = format!("/tmp/ss-smbd.{}", std::process::id());
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["private", "lock", "state", "cache", "ncalrpc"] {
            std::fs::create_dir_all(format!("{dir}/{sub}")).map_err(|e| TestErr::Fail(format!("mkdir {dir}/{sub}: {e}")))?;
        }
        let port = free_port()?;
        let sockopt = sndbuf.map(|b| format!("  socket options = SO_SNDBUF={b}\n")).unwrap_or_default();
        // A standalone server on loopback with all its state under `dir`;
        // guests map to nobody; sendfile on, the async read path off.
        let conf = format!(
            "[global]\n  server role = standalone server\n  interfaces = 127.0.0.1\n  bind interfaces only = yes\n\
             \x20 smb ports = {port}\n  private dir = {dir}/private\n  lock directory = {dir}/lock\n\
             \x20 state directory = {dir}/state\n  cache directory = {dir}/cache\n  pid directory = {dir}\n\
             \x20 ncalrpc dir = {dir}/ncalrpc\n  map to guest = Bad User\n  load printers = no\n\
             \x20 printcap name = /dev/null\n  disable spoolss = yes\n  use sendfile = yes\n  aio read size = 0\n\
             \x20 server signing = default\n  server smb encrypt = off\n  log level = 1\n{sockopt}\
             [t]\n  path = {root}\n  guest ok = yes\n  read only = no\n"
        );
        std::fs::write(format!("{dir}/smb.conf"), conf).map_err(|e| TestErr::Fail(e.to_string()))?;
        let smbd_args = ["--foreground", "--no-process-group", "--debug-stdout", "-s"];
        let mut cmd = if stable {
            let mut c = Command::new(tool());
            c.args(["exec", "--", SMBD]);
            c
        } else {
            Command::new(SMBD)
        };
        cmd.args(smbd_args).arg(format!("{dir}/smb.conf"));
        let log = std::fs::File::create(format!("{dir}/smbd.log")).map_err(|e| TestErr::Fail(e.to_string()))?;
        let log2 = log.try_clone().map_err(|e| TestErr::Fail(e.to_string()))?;
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        // SAFETY: setsid between fork and exec touches no memory of ours:
        // smbd and the children it forks per connection share one group.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            })
        };
        let started = Instant::now();
        let child = cmd.spawn().map_err(|e| TestErr::Fail(format!("{cmd:?}: {e}")))?;
        let mut me = Self { dir, port, child };
        let up = wait_until(Duration::from_secs(60), || {
            matches!(me.child.try_wait(), Ok(None)) && TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        ensure!(up, "smbd did not come up on port {port}: log: {}; its processes: {}", me.log(), session_report(me.child.id()));
        // Its usual time says how far a start that never came was from
        // the limit.
        ctx.note(format!("smbd answered on its port after {:.1} s", started.elapsed().as_secs_f64()));
        Ok(me)
    }

    pub fn log(&self) -> String {
        let s = std::fs::read_to_string(format!("{}/smbd.log", self.dir)).unwrap_or_default();
        let tail: Vec<&str> = s.lines().rev().take(15).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    /// smbclient as a guest on this server running `cmds`.
    pub fn client(&self, cmds: &str) -> Command {
        let mut c = Command::new(SMBCLIENT);
        // The server's file for the client too: its state directories are
        // under /tmp (the guest's root file system is read-only).
        let conf = format!("{}/smb.conf", self.dir);
        c.args(["//127.0.0.1/t", "-s", &conf, "-p", &self.port.to_string(), "-N", "-c", cmds]);
        c
    }

    /// Downloads `name` with smbclient; the bytes as the client got them.
    pub fn download(&self, name: &str, out: &str) -> TResult<Vec<u8>> {
        let o = self.client(&format!("get {name} {out}")).output().map_err(|e| TestErr::Fail(e.to_string()))?;
        ensure!(
            o.status.success(),
            "smbclient get {name}: {:?}: {} {}",
            o.status,
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        );
        std::fs::read(out).map_err(|e| TestErr::Fail(format!("{out}: {e}")))
    }

    /// Whether smbd still serves: a fresh client lists the share.
    pub fn serves(&self) -> TResult {
        let o = self.client("ls").output().map_err(|e| TestErr::Fail(e.to_string()))?;
        ensure!(o.status.success(), "smbd no longer serves: smbclient ls: {:?}; smbd log: {}", o.status, self.log());
        Ok(())
    }
}

impl Drop for Smbd {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: signalling the process group setsid made for smbd.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.child.wait();
        // Connection children may outlive the parent for a moment.
        wait_until(Duration::from_secs(10), || {
            // SAFETY: kill with signal 0 only asks whether the group exists.
            unsafe { libc::kill(-pid, 0) != 0 }
        });
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the processes of session `sid` are doing: command, state, where
/// they wait and their kernel stacks, for a server that never came up.
fn session_report(sid: u32) -> String {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return "no /proc".into() };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Some(stat) = ProcStat::read(pid) else { continue };
        if stat.session() != Some(sid) {
            continue;
        }
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        let stack = std::fs::read_to_string(format!("/proc/{pid}/stack")).unwrap_or_default();
        let stack: Vec<&str> = stack.lines().take(12).map(|l| l.split_whitespace().nth(1).unwrap_or(l)).collect();
        out.push(format!("{pid} {} {} wchan {wchan} stack [{}]", stat.comm, stat.state(), stack.join(" < ")));
    }
    if out.is_empty() {
        "none left".into()
    } else {
        out.join("; ")
    }
}

/// The queues of the loopback TCP connections to or from `port`, from
/// /proc/net/tcp: (the clients' receive queues, the server's send queues).
/// A sendfile()d byte sits in one of them until the client reads it.
fn queues_on_port(port: u16) -> (usize, usize) {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let (mut rx, mut tx) = (0, 0);
    for l in text.lines().skip(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 5 || f[3] != "01" {
            continue; // not ESTABLISHED
        }
        let p = |a: &str| a.rsplit(':').next().and_then(|h| u16::from_str_radix(h, 16).ok()).unwrap_or(0);
        let q: Vec<usize> = f[4].split(':').map(|h| usize::from_str_radix(h, 16).unwrap_or(0)).collect();
        if q.len() != 2 {
            continue;
        }
        if p(f[1]) == port {
            tx += q[0];
        } else if p(f[2]) == port {
            rx += q[1];
        }
    }
    (rx, tx)
}

fn queued_on_port(port: u16) -> usize {
    let (rx, tx) = queues_on_port(port);
    rx + tx
}

/// The one connection to `port` as one `ss -ti` dump shows both its ends
/// (each end's queue and counters read together).
struct Connection {
    /// Bytes smbd has written into its socket: bytes_acked + Send-Q.
    written: usize,
    /// smbd's Send-Q: written, not yet acknowledged.
    tx: usize,
    /// Bytes the client has received, whether read yet or not.
    received: usize,
    /// The client's receive queue: received, not yet read.
    rx: usize,
}

/// The client's `bytes_received` and the server's Send-Q overlap by what
/// was received but not yet acknowledged (a full receive buffer delays
/// ACKs), and read apart they also count bytes that moved between the
/// reads: their sum once claimed 650 KB more than smbd had sent.
fn connection(port: u16) -> TResult<Connection> {
    let o = Command::new("ss")
        .args(["-tinH", "state", "established", &format!("( sport = :{port} or dport = :{port} )")])
        .output()
        .map_err(|e| TestErr::Fail(format!("ss: {e}")))?;
    let text = String::from_utf8_lossy(&o.stdout);
    let port_of = |a: &str| a.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
    let field = |info: &str, name: &str| {
        info.split_whitespace().find_map(|w| w.strip_prefix(name)).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0)
    };
    let (mut written, mut received) = (Vec::new(), Vec::new());
    let mut lines = text.lines().peekable();
    while let Some(l) = lines.next() {
        let t: Vec<&str> = l.split_whitespace().collect();
        if l.starts_with(char::is_whitespace) || t.len() < 4 {
            continue;
        }
        let info = lines.next_if(|n| n.starts_with(char::is_whitespace)).unwrap_or("");
        let q = |i: usize| t[i].parse::<usize>().unwrap_or(0);
        if port_of(t[2]) == Some(port) {
            written.push((field(info, "bytes_acked:") + q(1), q(1)));
        } else if port_of(t[3]) == Some(port) {
            received.push((field(info, "bytes_received:"), q(0)));
        }
    }
    ensure!(written.len() == 1 && received.len() == 1, "ss shows {} server and {} client ends on port {port}: {text}", written.len(), received.len());
    Ok(Connection { written: written[0].0, tx: written[0].1, received: received[0].0, rx: received[0].1 })
}

/// Waits until what sits in the sockets of `port` stops growing.
fn wait_port_queued(port: u16) -> TResult<usize> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut last, mut since) = (0usize, Instant::now());
    loop {
        let n = queued_on_port(port);
        if n != last {
            (last, since) = (n, Instant::now());
        } else if n > 0 && since.elapsed() > Duration::from_millis(700) {
            return Ok(n);
        }
        ensure!(Instant::now() < deadline, "the connection's queues never settled ({n} bytes)");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where a stalled download stands, once the queues of its connection
/// have stopped growing: smbclient has taken `received - rx` bytes of the
/// connection (into its memory, a copy); the rest of what smbd wrote
/// ([`connection`]), about `rx + tx`, sits in the sockets, referencing
/// the page cache unless the module made it stable. Negotiation, session
/// setup and the 84-byte headers of the READ responses are a few KiB of that stream: 64 KiB is
/// ample to turn stream offsets into file offsets.
struct Stall {
    rx: usize,
    tx: usize,
    /// File bytes below this were taken by the client (a bound).
    taken: usize,
    /// File bytes below this were sent by smbd (a bound).
    early: usize,
}

impl Stall {
    fn wait(port: u16) -> TResult<Self> {
        wait_port_queued(port)?;
        let Connection { written, tx, received, rx } = connection(port)?;
        let taken = received.saturating_sub(rx).min(BIG);
        let early = written.saturating_sub(64 << 10).min(BIG);
        Ok(Self { rx, tx, taken, early })
    }

    fn describe(&self) -> String {
        format!(
            "smbclient had taken {} bytes of the connection and {} sat in the sockets ({} received, \
             {} not yet): file bytes up to {} were sent",
            self.taken,
            self.rx + self.tx,
            self.rx,
            self.tx,
            self.early
        )
    }
}

/// Counter deltas of one smbd run.
struct Seen {
    mode_splices: u64,
    zero_copy: u64,
    copied: u64,
}

fn counters_now() -> Seen {
    Seen {
        mode_splices: counter("mode_splices").unwrap_or(0),
        zero_copy: counter("bytes_zero_copy").unwrap_or(0),
        copied: counter("bytes_copied_at_splice").unwrap_or(0),
    }
}

impl Seen {
    fn since(&self, before: &Seen) -> Seen {
        Seen {
            mode_splices: self.mode_splices - before.mode_splices,
            zero_copy: self.zero_copy - before.zero_copy,
            copied: self.copied - before.copied,
        }
    }

    /// In the mode: smbd's reads were sendfile()s made stable, zero copy on
    /// ext4/xfs (unless the file system copies at splice time). Outside it:
    /// none of them was.
    fn check(&self, ctx: &Ctx, stable: bool, bytes: usize) -> TResult {
        ctx.note(format!(
            "smbd made {} splices in the mode: {} bytes zero copy, {} copied at splice",
            self.mode_splices, self.zero_copy, self.copied
        ));
        if !stable {
            ensure!(self.mode_splices == 0, "smbd outside the mode counted {} mode splices", self.mode_splices);
            return Ok(());
        }
        ensure!(self.mode_splices > 0, "smbd under stable-splice exec made no splices in the mode: its reads did not go through sendfile");
        if copies_at_splice(&ctx.dir) {
            ensure!(self.copied > 0, "nothing copied at splice on a file system that copies");
        } else {
            ensure!(
                self.zero_copy as usize >= bytes / 2,
                "only {} of {bytes} bytes served zero copy (copied at splice: {})",
                self.zero_copy,
                self.copied
            );
        }
        Ok(())
    }
}

/// smbclient stops taking the download (its stdout, a pipe of ours, is not
/// read) with MBs of sendfile()d data in the sockets; the file is
/// overwritten; then the download completes. Every byte smbd had sent
/// before the overwrite must arrive as it was in the mode.
fn stalled_client(ctx: &Ctx, stable: bool) -> TResult {
    let file = named_file(&ctx.dir, 0o644)?;
    let name = served_name(&file);
    let a = pattern(0x5a, 0, BIG);
    let b = pattern(0xc3, 0, BIG);
    let f = &file.fd;
    pwrite_all(f.raw(), &a, 0)?;
    settle_page_cache(f.raw(), BIG)?;
    let smbd = Smbd::start(ctx, stable, None)?;
    let before = counters_now();
    let mut client = smbd
        .client(&format!("get {name} -"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| TestErr::Fail(format!("smbclient: {e}")))?;
    let mut out = client.stdout.take().ok_or_else(|| TestErr::Fail("no stdout".into()))?;
    let at = Stall::wait(smbd.port)?;
    pwrite_all(f.raw(), &b, 0)?;
    let mut got = Vec::with_capacity(BIG);
    out.read_to_end(&mut got).map_err(|e| TestErr::Fail(format!("reading smbclient's output: {e}")))?;
    let st = client.wait().map_err(|e| TestErr::Fail(e.to_string()))?;
    ensure!(st.success(), "smbclient: {st:?}");
    ensure!(got.len() == BIG, "smbclient delivered {} bytes, expected {BIG}", got.len());
    let seen = counters_now().since(&before);
    let (taken, early) = (at.taken, at.early);
    ctx.note(format!("when the file was overwritten {}", at.describe()));
    ensure!(at.rx + at.tx >= 1 << 20, "only {} bytes in the sockets: the test needs MBs in flight", at.rx + at.tx);
    seen.check(ctx, stable, BIG)?;
    if stable {
        expect_bytes("bytes smbd sent before the overwrite", &got[..early], &a[..early], Some(("the new content", &b[..early])))
    } else {
        let from = taken.min(early) & !(PAGE - 1);
        let changed = got[from..early].chunks(PAGE).zip(a[from..early].chunks(PAGE)).filter(|(x, y)| x != y).count();
        ctx.note(format!("without the mode {changed} pages of the bytes in the sockets changed"));
        if changed == 0 {
            skip!("without the mode the bytes already sent kept their content this time");
        }
        Ok(())
    }
}

pub fn e2e_smb_stalled_client(ctx: &Ctx) -> TResult {
    stalled_client(ctx, true)
}
pub fn plain_e2e_smb_stalled_client(ctx: &Ctx) -> TResult {
    stalled_client(ctx, false)
}

/// smbclient downloads while a writer rewrites the file page by page:
/// every page must arrive as one whole version in the mode.
fn smbclient_rewrite(ctx: &Ctx, stable: bool) -> TResult {
    let file = named_file(&ctx.dir, 0o644)?;
    let name = served_name(&file);
    let f = &file.fd;
    for i in 0..BIG / PAGE {
        pwrite_all(f.raw(), &version_page(0, i), i * PAGE)?;
    }
    // smbd's socket is non-blocking: a sendfile() that the socket takes
    // only in part is continued by a new call, a second snapshot, usually
    // inside a page, torn by the contract's own rules. A send buffer that
    // takes whole 8 MiB reads leaves only whole calls. smbd sets it on each
    // connection, so wmem_max stays raised until the downloads are done
    // (restored right after smbd's start, it capped the buffer at the
    // default: a kprobe on sendfile64 saw EAGAIN and short sends in every
    // run, and once a page torn at such a seam failed the case).
    let _wmem = WmemMax::raise(4 * BIG)?;
    let smbd = Smbd::start(ctx, stable, Some(2 * BIG))?;
    let out_file = named_file("/tmp", 0o600)?;
    let out = out_file.path.clone().unwrap_or_default();
    let before = counters_now();
    downloads_while_rewritten(ctx, f.raw(), BIG, stable, &mut || smbd.download(&name, &out))?;
    let seen = counters_now().since(&before);
    ensure!(
        seen.mode_splices > 0 || !stable,
        "smbd under stable-splice exec made no splices in the mode: its reads did not go through sendfile"
    );
    ensure!(stable || seen.mode_splices == 0, "smbd outside the mode counted {} mode splices", seen.mode_splices);
    Ok(())
}

pub fn e2e_smbclient_rewrite(ctx: &Ctx) -> TResult {
    smbclient_rewrite(ctx, true)
}
pub fn plain_e2e_smbclient_rewrite(ctx: &Ctx) -> TResult {
    smbclient_rewrite(ctx, false)
}

/// smbd in the mode with a file of `BIG` bytes of `a`, and a way to start
/// a download that stalls with MBs in its sockets.
struct Misbehaving {
    file: TestFile,
    name: String,
    a: Vec<u8>,
    smbd: Smbd,
}

impl Misbehaving {
    fn start(ctx: &Ctx) -> TResult<Self> {
        let file = named_file(&ctx.dir, 0o644)?;
        let name = served_name(&file);
        let a = pattern(0x71, 0, BIG);
        pwrite_all(file.fd.raw(), &a, 0)?;
        settle_page_cache(file.fd.raw(), BIG)?;
        let smbd = Smbd::start(ctx, true, None)?;
        Ok(Self { file, name, a, smbd })
    }

    fn stalled(&self) -> TResult<(Child, Stall)> {
        let c = self
            .smbd
            .client(&format!("get {} -", self.name))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| TestErr::Fail(format!("smbclient: {e}")))?;
        let at = Stall::wait(self.smbd.port)?;
        Ok((c, at))
    }

    /// smbd is gone with its clients: nothing held, no call in flight.
    fn end(self) -> TResult {
        drop(self.smbd);
        if !wait_holds_released(Duration::from_secs(20)) {
            // What could still reference the held pages: TCP sockets with
            // queued bytes (an orphaned one keeps its send queue), smbd
            // processes still alive.
            let tcp: Vec<String> = std::fs::read_to_string("/proc/net/tcp")
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.len() > 4 && f[4] != "00000000:00000000").then(|| format!("st {} q {}", f[3], f[4]))
                })
                .collect();
            let smbds = std::process::Command::new("pgrep")
                .args(["-c", "smbd"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            fail!(
                "holds_active {:?} after smbd and its clients are gone (TCP sockets with queued bytes: {tcp:?}; smbd processes: {smbds}); held: {}",
                counter("holds_active"),
                holds_report(24)
            );
        }
        ensure!(counter("calls_in_flight") == Some(0), "calls_in_flight {:?} after smbd is gone", counter("calls_in_flight"));
        ensure!(counter("break_failures") == Some(0), "break_failures {:?}", counter("break_failures"));
        Ok(())
    }
}

/// A client killed mid-download with MBs in its sockets: smbd serves on,
/// and once it is gone nothing is held.
pub fn e2e_smb_client_killed(ctx: &Ctx) -> TResult {
    let m = Misbehaving::start(ctx)?;
    let (mut c, q) = m.stalled()?;
    let held = counter("holds_active").unwrap_or(0);
    ctx.note(format!("client killed when {}; {held} holds active", q.describe()));
    let _ = c.kill();
    let _ = c.wait();
    m.smbd.serves()?;
    let out = format!("/tmp/ss-smb-killed.{}", std::process::id());
    let again = m.smbd.download(&m.name, &out);
    let _ = std::fs::remove_file(&out);
    ensure!(again? == m.a, "a download after the killed one differs from the file");
    m.end()
}

/// A truncate into the middle of a page that sits in the sockets of a
/// stalled download: the truncate zeroes the rest of that page in the page
/// cache, and the download's later reads are past the new end of the file.
/// What smbd had sent stays the old content; smbd serves on; nothing is
/// held once it is gone.
pub fn e2e_smb_truncated_under_read(ctx: &Ctx) -> TResult {
    let m = Misbehaving::start(ctx)?;
    let (mut c, q) = m.stalled()?;
    let cut = ((q.taken + q.early) / 2 & !(PAGE - 1)) + 100;
    ftruncate(m.file.fd.raw(), cut)?;
    let mut got = Vec::new();
    let mut out = c.stdout.take().ok_or_else(|| TestErr::Fail("no stdout".into()))?;
    let _ = out.read_to_end(&mut got);
    let st = c.wait().map_err(|e| TestErr::Fail(e.to_string()))?;
    ctx.note(format!("truncated to {cut} when {}: the client got {} bytes ({st:?})", q.describe(), got.len()));
    ensure!(got.len() <= BIG, "the client got {} bytes of a {BIG}-byte file", got.len());
    // Everything smbd had sent before the truncate is the old content, the
    // part beyond the cut included, never the zeroes the truncate leaves in
    // a page the sockets still share. (Reads after it may come back padded:
    // smbd checks the size it cached at open and fills a short sendfile()
    // with zeroes.)
    let n = got.len().min(q.early);
    ensure!(n > cut, "the client got only {n} bytes of what was sent before the truncate (cut at {cut})");
    expect_bytes("bytes of the download sent before the truncate", &got[..n], &m.a[..n], None)?;
    m.smbd.serves()?;
    let path = format!("/tmp/ss-smb-truncated.{}", std::process::id());
    let now = m.smbd.download(&m.name, &path);
    let _ = std::fs::remove_file(&path);
    ensure!(now? == m.a[..cut], "a download after the truncate is not the file's first {cut} bytes");
    m.end()
}
