//! Workloads: something that moves bytes, timed.

use crate::*;

/// Something that moves bytes: `xfer` does one transfer and returns its size,
/// `sync` waits until the bytes have really arrived (TCP receiver).
pub(crate) trait Workload {
    fn xfer(&mut self) -> Res<u64>;
    fn sync(&mut self) -> Res {
        Ok(())
    }
}

/// One timed run: transfers until `secs` passed, then sync.
pub(crate) fn run_once(w: &mut dyn Workload, secs: f64) -> Res<Run> {
    let c0 = cpu_secs();
    let t0 = Instant::now();
    let mut bytes = 0;
    loop {
        bytes += w.xfer()?;
        if t0.elapsed().as_secs_f64() >= secs {
            break;
        }
    }
    w.sync()?;
    let wall = t0.elapsed().as_secs_f64();
    Ok(Run { bytes, wall, cpu: cpu_secs() - c0 })
}

/// Loopback TCP connection with a receiver thread that reads (copies) all
/// it gets into a user buffer, as a client would.
pub(crate) struct TcpSink {
    pub(crate) tx: Fd,
    pub(crate) received: Arc<AtomicU64>,
    pub(crate) sent: u64,
    pub(crate) th: Option<std::thread::JoinHandle<Res>>,
}

impl TcpSink {
    pub(crate) fn new() -> Res<TcpSink> {
        let (tx, rx) = tcp_pair()?;
        let received = Arc::new(AtomicU64::new(0));
        let r2 = received.clone();
        let th = std::thread::Builder::new()
            .name("tcp-receiver".into())
            .spawn(move || -> Res {
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = recv(rx.raw(), &mut buf)?;
                    if n == 0 {
                        return Ok(());
                    }
                    r2.fetch_add(n as u64, Ordering::Release);
                }
            })
            .map_err(|e| format!("spawn receiver: {e}"))?;
        Ok(TcpSink { tx, received, sent: 0, th: Some(th) })
    }

    /// Wait until the receiver has everything that was sent.
    pub(crate) fn wait(&mut self) -> Res {
        let t0 = Instant::now();
        while self.received.load(Ordering::Acquire) < self.sent {
            if self.th.as_ref().is_none_or(|t| t.is_finished()) {
                return Err("TCP receiver thread ended early".into());
            }
            if t0.elapsed() > Duration::from_secs(120) {
                return Err("TCP receiver did not get the data within 120 s".into());
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Res {
        shutdown_write(self.tx.raw());
        match self.th.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err("TCP receiver thread panicked".into()),
            None => Ok(()),
        }
    }
}

/// The throughput workload: `method` at transfer size `size` to one sink.
pub(crate) struct Xfer<'a> {
    pub(crate) method: Method,
    pub(crate) size: usize,
    pub(crate) file: i32,
    pub(crate) odirect: Option<i32>,
    pub(crate) file_bytes: u64,
    pub(crate) next: [u64; 4],
    pub(crate) pipe: &'a Pipe,
    pub(crate) buf: &'a mut [u8],
    pub(crate) out: i32,
    pub(crate) tcp: Option<&'a mut TcpSink>,
}

impl Workload for Xfer<'_> {
    fn xfer(&mut self) -> Res<u64> {
        let i = self.method.idx();
        let off = self.next[i];
        // Walk through the file: each transfer reads pages the previous did not.
        self.next[i] = (off + self.size as u64) % self.file_bytes;
        match self.method {
            Method::Plain | Method::Stable | Method::KernelCopy => {
                let (src, flags) = match self.method {
                    Method::Plain => (self.file, 0),
                    Method::Stable => (self.file, SPLICE_F_STABLE),
                    _ => (self.odirect.ok_or("no O_DIRECT descriptor")?, 0),
                };
                splice_file_to_pipe(src, off, self.pipe.w.raw(), self.size, flags)?;
                drain_pipe(self.pipe.r.raw(), self.out, self.size)?;
            }
            Method::ReadWrite => {
                pread_full(self.file, self.buf, off)?;
                write_full(self.out, self.buf)?;
            }
        }
        if let Some(t) = self.tcp.as_deref_mut() {
            t.sent += self.size as u64;
        }
        Ok(self.size as u64)
    }

    fn sync(&mut self) -> Res {
        match self.tcp.as_deref_mut() {
            Some(t) => t.wait(),
            None => Ok(()),
        }
    }
}
