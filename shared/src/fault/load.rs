//! The CPU and memory loads: faults that hold a resource for as long as they are set.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Fault;

/// A running CPU load: its threads stop when this is dropped.
#[derive(Debug)]
pub(super) struct CpuBurn(Arc<AtomicBool>);

impl CpuBurn {
    fn start(threads: usize, duty: f64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        // 10 ms periods: fine enough for a smooth CPU graph, coarse enough to cost nothing
        // when idle.
        let period = Duration::from_millis(10);
        let busy = period.mul_f64(duty);
        for _ in 0..threads {
            let stop = Arc::clone(&stop);
            let spawned = std::thread::Builder::new()
                .name("fault-cpu".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let start = Instant::now();
                        while start.elapsed() < busy {
                            std::hint::spin_loop();
                        }
                        std::thread::sleep(period.saturating_sub(busy));
                    }
                });
            if let Err(error) = spawned {
                tracing::warn!(%error, "cannot start a cpu_load thread");
            }
        }
        CpuBurn(stop)
    }
}

impl Drop for CpuBurn {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What a load fault holds while it is set. Never read: holding it is the load, and
/// dropping it (clear, expiry, replacement) ends the load.
#[derive(Debug)]
pub(super) enum Load {
    Cpu(#[allow(dead_code)] CpuBurn),
    Memory(#[allow(dead_code)] Vec<u8>),
}

pub(super) fn start_load(fault: &Fault) -> Option<Load> {
    match *fault {
        Fault::CpuLoad { threads, duty } => Some(Load::Cpu(CpuBurn::start(threads, duty))),
        Fault::MemoryLoad { mib } => {
            // Filled, not just reserved, so that every page is resident and shows in RSS.
            Some(Load::Memory(vec![0xA5; (mib as usize) << 20]))
        }
        _ => None,
    }
}
