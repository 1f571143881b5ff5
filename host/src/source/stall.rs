//! Telling a consumer that silently stopped working from one that has nothing to do.
//!
//! A group consumer can stop receiving without any error reaching the application: its session
//! timed out while the coordinator did not answer and the rejoin never completed (it holds no
//! partitions), or it holds partitions whose fetches no longer deliver. Nothing in librdkafka's
//! API reports either, so each pipeline asks a [`StallDetector`] when it is idle. The detector
//! only decides; the pipeline gathers the [`Observation`] (assignment, stored offsets,
//! watermarks) and replaces the consumer when the verdict is a stall. Positions always come from
//! the stored offsets, so a fresh consumer neither loses nor repeats anything.
//!
//! Rules, once nothing has been received for the stall timeout:
//! - holding partitions with events waiting past their stored offsets is a stall;
//! - holding no partitions while some partition has events waiting (more than one: a last
//!   transaction marker is never delivered) and no member of the group has moved its stored
//!   offset for the stall timeout is a stall (with more members than partitions an idle member
//!   is normal, as long as the others make progress);
//! - anything else is idleness: the clock starts again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a pipeline sees of its consumer and its partitions at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// Partitions assigned to this consumer.
    pub assigned: Vec<i32>,
    /// Stored next offset of each partition that has one (shared by the whole group).
    pub stored: BTreeMap<i32, i64>,
    /// Low and high watermark of every partition of the topic.
    pub watermarks: BTreeMap<i32, (i64, i64)>,
    /// This consumer's fetch position in the partitions it holds, where it has one. It moves
    /// past records that are never delivered (transaction markers), which stored offsets do not.
    pub positions: BTreeMap<i32, i64>,
}

impl Observation {
    /// Events waiting in `partition` past its stored offset (from the low watermark when
    /// nothing is stored yet).
    fn waiting(&self, partition: i32) -> i64 {
        let Some(&(low, high)) = self.watermarks.get(&partition) else { return 0 };
        let stored = self.stored.get(&partition).copied().unwrap_or(low).max(low);
        let from = self.positions.get(&partition).map_or(stored, |&position| position.max(stored));
        (high - from).max(0)
    }
}

/// What a look at the consumer concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Stalled, and why.
    Stalled(String),
    /// Nothing to do for this consumer: it is idle, not stalled.
    Idle,
    /// Events wait where no one holds them; watching whether the group moves.
    Watching,
}

/// Decides when a consumer counts as stalled.
#[derive(Debug)]
pub struct StallDetector {
    timeout: Duration,
    /// The last time the consumer received an event, was assigned partitions, or was found to
    /// have nothing to do.
    last_activity: Instant,
    last_check: Option<Instant>,
    /// Partitions with events waiting that this consumer does not hold: since when their stored
    /// offset has not moved, and what it is.
    quiet: BTreeMap<i32, (Instant, Option<i64>)>,
}

impl StallDetector {
    /// A detector that calls a consumer stalled after `timeout` without activity.
    pub fn new(timeout: Duration, now: Instant) -> Self {
        Self { timeout, last_activity: now, last_check: None, quiet: BTreeMap::new() }
    }

    /// The consumer received an event or a new assignment: the clock starts again.
    pub fn received(&mut self, now: Instant) {
        self.last_activity = now;
        self.quiet.clear();
    }

    /// Whether an observation is needed now: nothing received for the timeout, and the last
    /// check (if any) long enough ago.
    pub fn due(&self, now: Instant) -> bool {
        let interval = (self.timeout / 4).min(Duration::from_secs(5));
        now.duration_since(self.last_activity) >= self.timeout
            && self.last_check.is_none_or(|t| now.duration_since(t) >= interval)
    }

    /// An observation could not be made (the broker or the database did not answer).
    pub fn unobserved(&mut self, now: Instant) {
        self.last_check = Some(now);
    }

    /// Judges an observation. After a stall the caller replaces the consumer and calls
    /// [`StallDetector::received`] to start afresh.
    pub fn judge(&mut self, now: Instant, seen: &Observation) -> Verdict {
        self.last_check = Some(now);
        let silent = now.duration_since(self.last_activity).as_secs();
        if !seen.assigned.is_empty() {
            let waiting: i64 = seen.assigned.iter().map(|&p| seen.waiting(p)).sum();
            if waiting > 0 {
                return Verdict::Stalled(format!(
                    "holds partitions {:?} with {waiting} events waiting but received none for {silent}s",
                    seen.assigned
                ));
            }
            self.received(now);
            return Verdict::Idle;
        }
        // Holding nothing is normal while the members holding the partitions move them on. A
        // partition counts as stuck once more than one event waits (a last transaction marker
        // is never delivered, and this consumer has no fetch position to tell) and its stored
        // offset has not moved for the timeout.
        for &partition in seen.watermarks.keys() {
            let stored = seen.stored.get(&partition).copied();
            if seen.waiting(partition) <= 1 {
                self.quiet.remove(&partition);
                continue;
            }
            match self.quiet.get(&partition) {
                Some((_, before)) if *before == stored => {}
                _ => {
                    self.quiet.insert(partition, (now, stored));
                }
            }
        }
        let stuck: Vec<i32> = self
            .quiet
            .iter()
            .filter(|(_, (since, _))| now.duration_since(*since) >= self.timeout)
            .map(|(&p, _)| p)
            .collect();
        if !stuck.is_empty() {
            let waiting: i64 = stuck.iter().map(|&p| seen.waiting(p)).sum();
            return Verdict::Stalled(format!(
                "holds no partitions while {waiting} events wait in partitions {stuck:?}, where no member of its group applied any for {}s",
                self.timeout.as_secs()
            ));
        }
        if self.quiet.is_empty() {
            self.received(now);
            Verdict::Idle
        } else {
            Verdict::Watching
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn seen(assigned: &[i32], stored: &[(i32, i64)], marks: &[(i32, i64, i64)]) -> Observation {
        Observation {
            assigned: assigned.to_vec(),
            stored: stored.iter().copied().collect(),
            watermarks: marks.iter().map(|&(p, l, h)| (p, (l, h))).collect(),
            positions: BTreeMap::new(),
        }
    }

    #[test]
    fn a_fetch_position_at_the_end_is_not_a_stall() {
        let start = Instant::now();
        let mut detector = StallDetector::new(TIMEOUT, start);
        // A transaction marker at offset 9: nothing more to deliver, though 9 < 10.
        let mut seen = seen(&[0], &[(0, 9)], &[(0, 0, 10)]);
        seen.positions.insert(0, 10);
        assert_eq!(detector.judge(start + TIMEOUT, &seen), Verdict::Idle);
    }

    #[test]
    fn nothing_is_judged_before_the_timeout() {
        let start = Instant::now();
        let detector = StallDetector::new(TIMEOUT, start);
        assert!(!detector.due(start + Duration::from_secs(9)));
        assert!(detector.due(start + TIMEOUT));
    }

    #[test]
    fn partitions_with_waiting_events_and_no_delivery_are_a_stall() {
        let start = Instant::now();
        let mut detector = StallDetector::new(TIMEOUT, start);
        let now = start + TIMEOUT;
        let verdict = detector.judge(now, &seen(&[0, 1], &[(0, 5), (1, 7)], &[(0, 0, 5), (1, 0, 9), (2, 0, 4)]));
        let reason = "holds partitions [0, 1] with 2 events waiting but received none for 10s";
        assert_eq!(verdict, Verdict::Stalled(reason.into()));
    }

    #[test]
    fn a_caught_up_consumer_is_idle_and_starts_the_clock_again() {
        let start = Instant::now();
        let mut detector = StallDetector::new(TIMEOUT, start);
        let now = start + TIMEOUT;
        // Partition 2 lags, but it is not this consumer's.
        assert_eq!(detector.judge(now, &seen(&[0], &[(0, 5)], &[(0, 0, 5), (2, 0, 4)])), Verdict::Idle);
        assert!(!detector.due(now + Duration::from_secs(9)));
    }

    #[test]
    fn nothing_stored_counts_from_the_low_watermark() {
        let start = Instant::now();
        let mut detector = StallDetector::new(TIMEOUT, start);
        // Retention removed offsets 0..100: the 20 events from 100 wait.
        let verdict = detector.judge(start + TIMEOUT, &seen(&[3], &[], &[(3, 100, 120)]));
        assert!(matches!(verdict, Verdict::Stalled(reason) if reason.contains("20 events waiting")));
    }

    #[test]
    fn no_partitions_is_a_stall_only_where_no_member_moves_on() {
        let start = Instant::now();
        let mut detector = StallDetector::new(TIMEOUT, start);
        let marks = [(0, 0, 50), (1, 0, 50), (2, 0, 1)];
        let mut now = start + TIMEOUT;
        // First look: events wait in 0 and 1 (one last event in 2 may be a marker): watch.
        assert_eq!(detector.judge(now, &seen(&[], &[(0, 10)], &marks)), Verdict::Watching);
        now += Duration::from_secs(5);
        // Another member moves partition 0 on; partition 1 stays where it was.
        assert_eq!(detector.judge(now, &seen(&[], &[(0, 20)], &marks)), Verdict::Watching);
        now += Duration::from_secs(5);
        let verdict = detector.judge(now, &seen(&[], &[(0, 30)], &marks));
        let reason = "holds no partitions while 50 events wait in partitions [1], where no member of its group applied any for 10s";
        assert_eq!(verdict, Verdict::Stalled(reason.into()));
    }

    #[test]
    fn no_partitions_while_the_others_catch_up_is_idle() {
        let start = Instant::now();
        let mut detector = StallDetector::new(TIMEOUT, start);
        let now = start + TIMEOUT;
        assert_eq!(detector.judge(now, &seen(&[], &[(0, 40)], &[(0, 0, 50)])), Verdict::Watching);
        assert_eq!(detector.judge(now + Duration::from_secs(5), &seen(&[], &[(0, 50)], &[(0, 0, 50)])), Verdict::Idle);
        assert!(!detector.due(now + Duration::from_secs(6)));
    }

    #[test]
    fn no_partitions_and_nothing_waiting_is_idle() {
        let start = Instant::now();
        let mut detector = StallDetector::new(TIMEOUT, start);
        assert_eq!(detector.judge(start + TIMEOUT, &seen(&[], &[(0, 50)], &[(0, 0, 50)])), Verdict::Idle);
        assert!(!detector.due(start + TIMEOUT + Duration::from_secs(1)));
    }
}
