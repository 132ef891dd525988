//! End to end with an unmodified server from Debian's packages: nginx with
//! `sendfile on;`, started as a daemon (master, forked workers), with and
//! without `stable-splice exec`. The nginx binary comes from the `nginx`
//! package that scripts/setup unpacks into its cache (`SS_NGINX`).

use super::mode::{tool, wait_queued};
use super::socket_sink::force_rcvbuf;
use super::Ctx;
use crate::util::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIG: usize = 16 << 20;

/// A running nginx daemon serving `root` on 127.0.0.1; killed when dropped.
struct Nginx {
    dir: String,
    port: u16,
    master: i32,
}

fn nginx_binary() -> TResult<String> {
    let path = std::env::var("SS_NGINX").unwrap_or_default();
    if path.is_empty() || !std::path::Path::new(&path).exists() {
        fail!("no nginx binary (SS_NGINX={path:?}): scripts/setup unpacks Debian's nginx into its cache");
    }
    Ok(path)
}

pub(super) fn free_port() -> TResult<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| TestErr::Fail(format!("bind: {e}")))?;
    Ok(l.local_addr().map_err(|e| TestErr::Fail(e.to_string()))?.port())
}

impl Nginx {
    /// `sndbuf`: the listening socket's `SO_SNDBUF` (bytes), if not the
    /// default.
    fn start(root: &str, stable: bool, sndbuf: Option<usize>) -> TResult<Self> {
        let bin = nginx_binary()?;
        let dir = format!("/tmp/ss-nginx.{}", std::process::id());
        std::fs::create_dir_all(&dir).map_err(|e| TestErr::Fail(format!("mkdir {dir}: {e}")))?;
        let port = free_port()?;
        let conf = format!(
            "daemon on; master_process on; worker_processes 2; user root;\n\
             pid {dir}/nginx.pid; error_log {dir}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  sendfile on; sendfile_max_chunk 2m; access_log off; keepalive_timeout 0;\n\
               default_type application/octet-stream;\n\
               client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;\n\
               fastcgi_temp_path {dir}/fastcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;\n\
               server {{ listen 127.0.0.1:{port}{sndbuf}; root {root}; }}\n}}\n",
            sndbuf = sndbuf.map(|b| format!(" sndbuf={b}")).unwrap_or_default()
        );
        std::fs::write(format!("{dir}/nginx.conf"), conf).map_err(|e| TestErr::Fail(e.to_string()))?;
        let mut cmd = if stable {
            let mut c = Command::new(tool());
            c.args(["exec", "--", &bin]);
            c
        } else {
            Command::new(&bin)
        };
        cmd.args(["-p", &dir, "-e", &format!("{dir}/error.log"), "-c", &format!("{dir}/nginx.conf")]);
        let out = cmd.output().map_err(|e| TestErr::Fail(format!("{cmd:?}: {e}")))?;
        let log = || std::fs::read_to_string(format!("{dir}/error.log")).unwrap_or_default();
        ensure!(out.status.success(), "nginx did not start: {:?} {} {}", out.status, String::from_utf8_lossy(&out.stderr), log());
        let mut master = 0;
        let up = wait_until(Duration::from_secs(20), || {
            master = std::fs::read_to_string(format!("{dir}/nginx.pid")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
            master > 0 && TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let text = if up { String::new() } else { log() };
        let me = Self { dir, port, master };
        ensure!(up, "nginx did not come up on port {port}: {text}");
        Ok(me)
    }

    /// A client with an 8 MiB receive buffer asks for `path`.
    fn request(&self, path: &str) -> TResult<TcpStream> {
        // SAFETY: a new socket we own; the address is filled in below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        ensure!(fd >= 0, "socket: {}", ename(errno()));
        // SAFETY: `fd` is ours; TcpStream owns it from here on.
        let mut s = unsafe { <TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        force_rcvbuf(fd, 8 << 20)?;
        // SAFETY: zeroed sockaddr_in filled in before use.
        let r = unsafe {
            let mut a: libc::sockaddr_in = std::mem::zeroed();
            a.sin_family = libc::AF_INET as u16;
            a.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            a.sin_port = self.port.to_be();
            libc::connect(fd, (&a as *const libc::sockaddr_in).cast(), std::mem::size_of::<libc::sockaddr_in>() as u32)
        };
        ensure!(r == 0, "connect: {}", ename(errno()));
        write!(s, "GET /{path} HTTP/1.0\r\nHost: localhost\r\n\r\n").map_err(|e| TestErr::Fail(e.to_string()))?;
        Ok(s)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if self.master > 0 {
            // The daemon is a session leader: its workers share its group.
            // SAFETY: signalling the process group nginx made.
            unsafe { libc::kill(-self.master, libc::SIGKILL) };
            let gone = |pid: i32| !std::path::Path::new(&format!("/proc/{pid}")).exists();
            let m = self.master;
            wait_until(Duration::from_secs(10), || gone(m));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Splits an HTTP response at the end of its header.
fn body_start(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// A client that stops reading until its socket holds MBs of the file; then
/// a local writer overwrites the file; then the client reads the rest. The
/// bytes already queued in its socket must be the old ones in the mode.
fn stalled_client(ctx: &Ctx, stable: bool) -> TResult {
    let file = named_file(&ctx.dir, 0o644)?;
    let name = served_name(&file);
    let a = pattern(0x41, 0, BIG);
    let b = pattern(0xb2, 0, BIG);
    let f = &file.fd;
    pwrite_all(f.raw(), &a, 0)?;
    settle_page_cache(f.raw(), BIG)?;
    let mode0 = counter("mode_splices").unwrap_or(0);
    let nginx = Nginx::start(&ctx.dir, stable, None)?;
    let mut s = nginx.request(&name)?;
    let queued = wait_queued(std::os::fd::AsRawFd::as_raw_fd(&s))?;
    pwrite_all(f.raw(), &b, 0)?;
    let mut all = Vec::with_capacity(BIG + 1024);
    s.read_to_end(&mut all).map_err(|e| TestErr::Fail(format!("read: {e}")))?;
    let start = body_start(&all).ok_or_else(|| TestErr::Fail("no HTTP header end".into()))?;
    let body = &all[start..];
    ensure!(body.len() == BIG, "body of {} bytes, expected {BIG}", body.len());
    let early = queued - start;
    let splices = counter("mode_splices").unwrap_or(0) - mode0;
    ctx.note(format!(
        "client socket held {queued} bytes ({early} of the body) when the file was overwritten; \
         nginx made {splices} splices in the mode"
    ));
    ensure!(early >= 1 << 20, "only {early} body bytes queued: the test needs MBs in flight");
    if stable {
        ensure!(splices > 0, "nginx under stable-splice exec made no splices in the mode (mode_splices)");
        expect_bytes("body bytes queued before the overwrite", &body[..early], &a[..early], Some(("the new content", &b[..early])))
    } else {
        ensure!(splices == 0, "nginx outside the mode counted {splices} mode splices");
        let changed = body[..early].chunks(PAGE).zip(a[..early].chunks(PAGE)).filter(|(x, y)| x != y).count();
        ctx.note(format!("without the mode {changed} pages of the bytes already received changed"));
        if changed == 0 {
            skip!("without the mode the received bytes kept their content this time");
        }
        Ok(())
    }
}

pub fn e2e_nginx_stalled_client(ctx: &Ctx) -> TResult {
    stalled_client(ctx, true)
}
pub fn plain_e2e_nginx_stalled_client(ctx: &Ctx) -> TResult {
    stalled_client(ctx, false)
}

/// The name nginx serves `file` under (its root is the file's directory).
pub(super) fn served_name(file: &TestFile) -> String {
    let path = file.path.as_deref().unwrap_or_default();
    path.rsplit('/').next().unwrap_or_default().to_string()
}

/// Page `i` of version `gen`: every 4-byte word is `gen << 16 | i`.
pub(super) fn version_page(gen: u32, i: usize) -> Vec<u8> {
    (gen << 16 | i as u32).to_ne_bytes().iter().copied().cycle().take(PAGE).collect()
}

/// Which version page `i` of a download is, or None if it is torn.
pub(super) fn page_version(p: &[u8], i: usize) -> Option<u32> {
    let w = u32::from_ne_bytes(p[..4].try_into().ok()?);
    (w & 0xffff == i as u32 && p.chunks(4).all(|x| x == w.to_ne_bytes())).then_some(w >> 16)
}

/// curl downloads the file while a writer rewrites it page by page, over
/// and over: every page that arrives must be one whole version of itself.
fn curl_rewrite(ctx: &Ctx, stable: bool) -> TResult {
    let pages = BIG / PAGE;
    let file = named_file(&ctx.dir, 0o644)?;
    let name = served_name(&file);
    let f = &file.fd;
    for i in 0..pages {
        pwrite_all(f.raw(), &version_page(0, i), i * PAGE)?;
    }
    // Every sendfile() call is one snapshot, and nginx continues a partial
    // send with a new call from where the socket stopped taking bytes,
    // usually inside a page: that page then arrives as two snapshots, torn
    // by the contract's own rules. A send buffer that takes the whole file
    // leaves only nginx's page-aligned sendfile_max_chunk (2 MiB) pieces.
    let _wmem = WmemMax::raise(4 * BIG)?;
    let nginx = Nginx::start(&ctx.dir, stable, Some(2 * BIG))?;
    let out_file = named_file("/tmp", 0o600)?;
    let out = out_file.path.clone().unwrap_or_default();
    let url = nginx.url(&name);
    downloads_while_rewritten(ctx, f.raw(), BIG, stable, &mut || {
        let st = Command::new("curl").args(["-sS", "-o", &out, &url]).status();
        ensure!(matches!(st, Ok(s) if s.success()), "curl failed: {st:?}");
        std::fs::read(&out).map_err(|e| TestErr::Fail(e.to_string()))
    })
}

/// `net.core.wmem_max` raised, so a server's `SO_SNDBUF` can take a whole
/// file, until dropped (then the old value is back). It has to last as
/// long as the connections: a server that sets its socket options on each
/// accepted socket (smbd) gets them capped by the value at that moment.
pub(super) struct WmemMax(String);

const WMEM_MAX: &str = "/proc/sys/net/core/wmem_max";

impl WmemMax {
    pub(super) fn raise(bytes: usize) -> TResult<Self> {
        let old = std::fs::read_to_string(WMEM_MAX).map_err(|e| TestErr::Fail(format!("{WMEM_MAX}: {e}")))?;
        std::fs::write(WMEM_MAX, format!("{bytes}")).map_err(|e| TestErr::Fail(format!("{WMEM_MAX}: {e}")))?;
        Ok(Self(old.trim().to_string()))
    }
}

impl Drop for WmemMax {
    fn drop(&mut self) {
        let _ = std::fs::write(WMEM_MAX, &self.0);
    }
}

/// Runs `download` (which returns the whole file as a client received it)
/// again and again while a writer rewrites the `len` bytes of `fd`, made
/// of [`version_page`]s, page by page: every page that arrives must be one
/// whole version of itself in the mode. Without it (`stable` false, the
/// control) a torn page shows the hazard, or the case skips.
pub(super) fn downloads_while_rewritten(
    ctx: &Ctx,
    fd: i32,
    len: usize,
    stable: bool,
    download: &mut dyn FnMut() -> TResult<Vec<u8>>,
) -> TResult {
    let pages = len / PAGE;
    let stop = Arc::new(AtomicBool::new(false));
    let gens = Arc::new(AtomicU32::new(0));
    let writer = {
        let (stop, gens) = (stop.clone(), gens.clone());
        std::thread::spawn(move || {
            let mut gen = 1u32;
            while !stop.load(Ordering::Relaxed) {
                for i in 0..pages {
                    let p = version_page(gen, i);
                    // SAFETY: our buffer, our descriptor.
                    unsafe { libc::pwrite(fd, p.as_ptr().cast(), PAGE, (i * PAGE) as i64) };
                }
                gens.store(gen, Ordering::Relaxed);
                gen = (gen + 1) & 0xffff;
            }
        })
    };
    let (mut torn, mut versions, mut downloads) = (0usize, std::collections::BTreeSet::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(ctx.stress_secs.clamp(5, 20));
    let mut first_torn = String::new();
    let result = (|| {
        while downloads < 3 || Instant::now() < deadline {
            let got = download()?;
            ensure!(got.len() == len, "the client got {} bytes, expected {len}", got.len());
            for (i, p) in got.chunks(PAGE).enumerate() {
                match page_version(p, i) {
                    Some(v) => {
                        versions.insert(v);
                    }
                    None => {
                        torn += 1;
                        if first_torn.is_empty() {
                            first_torn = format!("download {downloads}, page {i}");
                        }
                    }
                }
            }
            downloads += 1;
            // A control has shown its hazard once a page arrived torn and
            // the writer overlapped: more downloads would prove nothing new.
            if downloads >= 20 || (!stable && torn > 0 && versions.len() > 1) {
                break;
            }
        }
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
    result?;
    ctx.note(format!(
        "{downloads} downloads, {} versions of pages seen, writer at version {}, {torn} torn pages",
        versions.len(),
        gens.load(Ordering::Relaxed)
    ));
    ensure!(versions.len() > 1, "every page came from one version: the writer never overlapped a download");
    if stable {
        ensure!(torn == 0, "{torn} pages arrived torn (first: {first_torn})");
    } else if torn == 0 {
        skip!("without the mode no page arrived torn this time");
    }
    Ok(())
}

pub fn e2e_curl_rewrite(ctx: &Ctx) -> TResult {
    curl_rewrite(ctx, true)
}
pub fn plain_e2e_curl_rewrite(ctx: &Ctx) -> TResult {
    curl_rewrite(ctx, false)
}
