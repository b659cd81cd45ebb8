//! The clock faults: the services read the time through [`Faults`], which is the system
//! clock with `clock_freeze`, `clock_wrap`, `clock_drift` and `clock_offset` applied.

use std::time::{Duration, Instant, SystemTime};

use super::{Fault, FaultKind, Faults};
use crate::clock::Clock;

impl Clock for Faults {
    /// The system time with the clock faults applied: freeze or wrap fix the base, drift
    /// grows from when it was set, offset shifts the result.
    fn now(&self) -> SystemTime {
        let mut now = SystemTime::now();
        if !self.any() {
            return now;
        }
        // One look at the table for all four clock faults.
        let table = self.table();
        let instant = Instant::now();
        let live = |kind| {
            table
                .get(&kind)
                .filter(|entry| self.in_effect(entry, instant))
        };
        if let Some(entry) = live(FaultKind::ClockFreeze) {
            now = entry.set_wall;
        } else if let Some(entry) = live(FaultKind::ClockWrap) {
            if let (Fault::ClockWrap { before }, Some(wrap)) = (entry.request.fault, self.0.wrap_at)
            {
                now = wrap.checked_sub(before).unwrap_or(wrap) + entry.set_at.elapsed();
            }
        }
        if let Some(entry) = live(FaultKind::ClockDrift) {
            if let Fault::ClockDrift { ppm } = entry.request.fault {
                let drift = entry.set_at.elapsed().as_nanos() as f64 * ppm / 1e6;
                now = shift(now, drift as i128);
            }
        }
        if let Some(entry) = live(FaultKind::ClockOffset) {
            if let Fault::ClockOffset { offset_ns } = entry.request.fault {
                now = shift(now, offset_ns);
            }
        }
        now
    }
}

fn shift(time: SystemTime, ns: i128) -> SystemTime {
    let magnitude = Duration::from_nanos(ns.unsigned_abs().min(u64::MAX as u128) as u64);
    let shifted = if ns >= 0 {
        time.checked_add(magnitude)
    } else {
        time.checked_sub(magnitude)
    };
    shifted.unwrap_or(time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultRequest;
    use std::time::UNIX_EPOCH;

    /// A wrap instant as a service hands it in (TIME's is 2036-02-07T06:28:16Z).
    const WRAP: u64 = 2_085_978_496;

    #[test]
    fn clock_faults_shift_freeze_and_wrap() {
        let faults = Faults::new(None, Some(UNIX_EPOCH + Duration::from_secs(WRAP)));
        let real = SystemTime::now();
        faults.set(
            FaultRequest::parse_spec("clock_offset:offset=-1h").unwrap(),
            "test",
        );
        let shifted = faults.now();
        let behind = real.duration_since(shifted).unwrap();
        assert!(behind > Duration::from_secs(3599) && behind < Duration::from_secs(3601));
        faults.clear_all();
        faults.set(
            FaultRequest::parse_spec("clock_wrap:before=10s").unwrap(),
            "test",
        );
        let unix = faults.now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!((WRAP - 10..WRAP).contains(&unix), "{unix}");
        faults.clear_all();
        faults.set(FaultRequest::parse_spec("clock_freeze").unwrap(), "test");
        let frozen = faults.now();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(faults.now(), frozen);
        faults.clear_all();
        assert!(faults.now() > frozen);
    }

    #[test]
    fn clock_wrap_leaves_a_clock_without_a_wrap_alone() {
        let faults = Faults::new(None, None);
        faults.set(
            FaultRequest::parse_spec("clock_wrap:before=10s").unwrap(),
            "test",
        );
        let skew = faults
            .now()
            .duration_since(SystemTime::now())
            .unwrap_or_else(|e| e.duration());
        assert!(skew < Duration::from_secs(1), "{skew:?}");
    }
}
