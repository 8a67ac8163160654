//! What one run of one method costs: the measurement, and the fixed-rate
//! insert load whose latency it records.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};

use crate::config::{Method, Scenario, Step};

#[derive(Clone, Debug, Default)]
pub(crate) struct LoadStats {
    pub(crate) n: usize,
    pub(crate) errors: usize,
    pub(crate) first_error: Option<String>,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

#[derive(Clone, Debug)]
pub(crate) struct Measurement {
    pub(crate) rows: u64,
    pub(crate) scenario: Scenario,
    pub(crate) step: Step,
    pub(crate) method: Method,
    pub(crate) removed: i64,
    pub(crate) secs: f64,
    pub(crate) wal: i64,
    pub(crate) size_before: i64,
    pub(crate) size_after: i64,
    pub(crate) dead: i64,
    pub(crate) vacuum_secs: f64,
    pub(crate) vacuum_wal: i64,
    /// Tables (partitions) with dead tuples, which the VACUUM processed.
    pub(crate) vacuum_rels: usize,
    pub(crate) rows_left: i64,
    pub(crate) expired_left: i64,
    pub(crate) wrongly_removed: i64,
    pub(crate) idle: LoadStats,
    pub(crate) during: LoadStats,
    pub(crate) note: String,
    /// Heap blocks the run touched, an upper bound: per relation of the
    /// table (itself and its partitions), the smaller of its heap buffer
    /// accesses (shared hits and reads) during the run and its blocks; a
    /// partition the run dropped counts as wholly read (a DROP reads none
    /// of it, but what was read of it before is not counted once it is
    /// gone). The concurrent inserts' own accesses are in it too (a few
    /// blocks of the newest partition).
    pub(crate) heap_reads: i64,
    /// The table's heap blocks before the run.
    pub(crate) heap_total: i64,
}

impl Measurement {
    pub(crate) fn exact(&self) -> bool {
        self.expired_left == 0 && self.wrongly_removed == 0
    }
}

/// Samples of the fixed-rate insert load.
#[derive(Default)]
pub(crate) struct LoadSamples {
    pub(crate) lat_ms: Vec<f64>,
    pub(crate) errors: usize,
    pub(crate) first_error: Option<String>,
}

impl LoadSamples {
    pub(crate) fn stats(mut self) -> LoadStats {
        self.lat_ms.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| -> f64 {
            if self.lat_ms.is_empty() {
                return f64::NAN;
            }
            let rank = ((p * self.lat_ms.len() as f64).ceil() as usize).max(1);
            self.lat_ms[rank.min(self.lat_ms.len()) - 1]
        };
        LoadStats {
            n: self.lat_ms.len() + self.errors,
            errors: self.errors,
            first_error: self.first_error.clone(),
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            max_ms: self.lat_ms.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// A thread inserting single rows into `app.events` at a fixed rate, each in
/// its own transaction, on its own connection, timing each insert.
///
/// Latency is measured from the moment the insert was due: an insert that
/// had to wait behind a blocked one counts its wait (no coordinated
/// omission). Small timer overshoots (< 1 ms) are not counted as waiting.
pub(crate) struct Load {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) join: thread::JoinHandle<LoadSamples>,
}

impl Load {
    pub(crate) fn start(conninfo: &str, rate: f64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let conninfo = conninfo.to_string();
        let stop2 = Arc::clone(&stop);
        let join = thread::spawn(move || {
            let mut c = Client::connect(&conninfo, NoTls)
                .unwrap_or_else(|e| panic!("load connection `{conninfo}`: {e}"));
            let stmt = c
                .prepare(
                    "INSERT INTO app.events (tenant, at, payload) VALUES ('load', now(), 'load')",
                )
                .expect("preparing the load insert");
            let _ = ready_tx.send(());
            let period = Duration::from_secs_f64(1.0 / rate);
            let start = Instant::now();
            let mut out = LoadSamples::default();
            let mut i: u32 = 0;
            while !stop2.load(Ordering::Relaxed) {
                let due = start + period * i;
                let now = Instant::now();
                if due > now {
                    thread::sleep(due - now);
                }
                let sent = Instant::now();
                let from = if sent.duration_since(due) < Duration::from_millis(1) {
                    sent
                } else {
                    due
                };
                match c.execute(&stmt, &[]) {
                    Ok(_) => out.lat_ms.push(from.elapsed().as_secs_f64() * 1e3),
                    Err(e) => {
                        out.errors += 1;
                        if out.first_error.is_none() {
                            out.first_error = Some(e.to_string());
                        }
                    }
                }
                i += 1;
            }
            out
        });
        ready_rx
            .recv()
            .expect("the load thread died before it was ready");
        Load { stop, join }
    }

    pub(crate) fn finish(self) -> LoadStats {
        self.stop.store(true, Ordering::Relaxed);
        self.join.join().expect("load thread panicked").stats()
    }
}
