//! Command line, and the sizes every measurement uses.

pub(crate) const SIZES: [usize; 4] = [4 << 10, 64 << 10, 1 << 20, 8 << 20];
pub(crate) const GIB: f64 = (1u64 << 30) as f64;
pub(crate) const TARGET_SIZE: usize = 8 << 20;

pub(crate) const USAGE: &str = "usage: stable-splice-bench --dir DIR [--dir DIR...] --out DIR [--quick] \
[--secs-per-point S] [--repeats N] [--trials N] [--file-mib N]

  --dir DIR            file system to measure (repeatable); labelled by its statfs type
  --out DIR            where bench.json, bench.txt and throughput-<fs>.svg go
  --quick              smoke test: 0.05 s per point, 3 repeats, 200 latency trials
  --secs-per-point S   minimum length of one run of one point (default 0.3)
  --repeats N          runs per point, the median is reported (default 5)
  --trials N           writer-latency trials (default 2000)
  --file-mib N         source file size in MiB (default 64)
  --overhead-only      measure only the module loaded (as by default and with
                       direct_calls=1) against not loaded (on the first --dir, pinned
                       to one CPU) and write overhead.tsv; meant for a VM whose clock
                       counts instructions (qemu -icount)
  --overhead-from F    take those rows from F (an overhead.tsv) instead of measuring
  --module-params P    parameters for the overhead rows' insmod (policy=block, ...;
                       the direct_calls=1 rows add direct_calls=1; the first,
                       discarded round has the module as loaded before)
  --throughput-only    measure only plain and stable splice throughput (every --dir,
                       both sinks, every size) and write throughput.tsv; meant for a
                       VM whose clock counts instructions (qemu -icount)
  --throughput-from F  judge the throughput targets by F (a throughput.tsv); the
                       table still shows this run's own numbers
  --first-only         measure only the first stable splice of every page (a file
                       served once) against plain splice (every --dir, both sinks,
                       64 KiB, 1 MiB, 8 MiB) and write first.tsv; meant for a VM whose
                       clock counts instructions (qemu -icount)
  --first-from F       judge the first-splice targets by F (a first.tsv)
  --first-small        with --first-only: only the file written 4 KiB at a time
                       (small folios), to /dev/null (a quick A/B of the hold path)
  --pipeline-only      measure only Samba's io_uring read pipeline (every --dir) and
                       write pipeline.tsv; meant for a VM whose clock counts
                       instructions (qemu -icount, one vCPU)
  --pipeline-from F    judge the pipeline targets by F (a pipeline.tsv); the table
                       still shows this run's own numbers beside it
  --contention-only    measure only the break under contention (a writer beside
                       plain and stable splicers, every --dir) and print its rows
  --contended METHOD   with --contention-only: only METHOD (plain or stable) beside
                       the writer (plain-alone, stable-alone: without it), small
                       folios, --secs-per-point x --repeats seconds in one run, then
                       its GiB/s, the writer's writes/s and the module's counters
                       (a steady load to profile, e.g. under perf)
  --latency-only       measure only the writer latency into held pages (every
                       --dir) and print its rows
  --large-only         measure only the writer into a held large folio (every --dir),
                       print its rows and targets and write large.txt

Environment (set by scripts/bench, recorded in bench.json): SS_BENCH_ACCEL,
SS_BENCH_HOST_NPROC, SS_BENCH_HOST_CPU, SS_BENCH_HOST_LOADAVG.";

pub(crate) struct Opts {
    pub(crate) dirs: Vec<String>,
    pub(crate) out: String,
    pub(crate) quick: bool,
    pub(crate) secs: f64,
    pub(crate) repeats: usize,
    pub(crate) trials: usize,
    pub(crate) file_mib: usize,
    pub(crate) overhead_only: bool,
    pub(crate) overhead_from: Option<String>,
    pub(crate) throughput_only: bool,
    pub(crate) throughput_from: Option<String>,
    pub(crate) first_only: bool,
    pub(crate) first_from: Option<String>,
    /// First-splice rows of small folios to /dev/null only.
    pub(crate) first_small: bool,
    pub(crate) pipeline_only: bool,
    pub(crate) pipeline_from: Option<String>,
    /// Only the break-under-contention rows, printed (no result files).
    pub(crate) contention_only: bool,
    /// With `contention_only`: only this method beside the writer (a load to profile).
    pub(crate) contended: Option<(crate::Method, bool)>,
    /// Only the writer-latency rows, printed (no result files).
    pub(crate) latency_only: bool,
    /// Only the large-folio writer rows, printed and in large.txt.
    pub(crate) large_only: bool,
    /// Parameters of the overhead rows' insmod.
    pub(crate) module_params: Vec<String>,
}

pub(crate) fn parse_args() -> Result<Opts, String> {
    let mut dirs = Vec::new();
    let mut out = None;
    let mut quick = false;
    let (mut overhead_only, mut overhead_from) = (false, None);
    let (mut throughput_only, mut throughput_from) = (false, None);
    let (mut first_only, mut first_from, mut pipeline_only, mut pipeline_from) = (false, None, false, None);
    let (mut contention_only, mut first_small, mut latency_only) = (false, false, false);
    let mut large_only = false;
    let mut contended = None;
    let (mut secs, mut repeats, mut trials, mut file_mib) = (None, None, None, None);
    let mut module_params = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = |k: &str| inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{k} needs a value"));
        match key.as_str() {
            "--dir" => dirs.push(value("--dir")?),
            "--out" => out = Some(value("--out")?),
            "--quick" => quick = true,
            "--overhead-only" => overhead_only = true,
            "--overhead-from" => overhead_from = Some(value(&key)?),
            "--throughput-only" => throughput_only = true,
            "--throughput-from" => throughput_from = Some(value(&key)?),
            "--first-only" => first_only = true,
            "--first-small" => first_small = true,
            "--pipeline-only" => pipeline_only = true,
            "--pipeline-from" => pipeline_from = Some(value(&key)?),
            "--contention-only" => contention_only = true,
            "--latency-only" => latency_only = true,
            "--contended" => {
                contended = Some(match value(&key)?.as_str() {
                    "plain" => (crate::Method::Plain, true),
                    "stable" => (crate::Method::Stable, true),
                    "plain-alone" => (crate::Method::Plain, false),
                    "stable-alone" => (crate::Method::Stable, false),
                    m => return Err(format!("--contended: plain, stable, plain-alone or stable-alone, not {m}")),
                })
            }
            "--large-only" => large_only = true,
            "--first-from" => first_from = Some(value(&key)?),
            "--module-params" => module_params.extend(value(&key)?.split_whitespace().map(String::from)),
            "--secs-per-point" => {
                secs = Some(value(&key)?.parse::<f64>().map_err(|_| "bad --secs-per-point")?)
            }
            "--repeats" => repeats = Some(value(&key)?.parse::<usize>().map_err(|_| "bad --repeats")?),
            "--trials" => trials = Some(value(&key)?.parse::<usize>().map_err(|_| "bad --trials")?),
            "--file-mib" => file_mib = Some(value(&key)?.parse::<usize>().map_err(|_| "bad --file-mib")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a}\n{USAGE}")),
        }
    }
    if dirs.is_empty() {
        return Err(format!("no --dir given\n{USAGE}"));
    }
    let file_mib = file_mib.unwrap_or(64);
    if file_mib < 8 || file_mib % 8 != 0 {
        return Err("--file-mib must be a multiple of 8 (the largest transfer)".into());
    }
    let o = Opts {
        dirs,
        out: out.unwrap_or_else(|| "bench-results".into()),
        quick,
        secs: secs.unwrap_or(if quick { 0.05 } else { 0.3 }),
        repeats: repeats.unwrap_or(if quick { 3 } else { 5 }).max(1),
        trials: trials.unwrap_or(if quick { 200 } else { 2000 }).max(10),
        file_mib,
        overhead_only,
        overhead_from,
        throughput_only,
        throughput_from,
        first_only,
        first_from,
        first_small,
        pipeline_only,
        pipeline_from,
        contention_only,
        contended,
        latency_only,
        large_only,
        module_params,
    };
    Ok(o)
}
