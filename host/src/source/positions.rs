//! Partition positions, the source's own: what is held, each partition's stored next offset,
//! the assignment generation, and the next offset a batch accepts. No Kafka here: the Kafka
//! source's rebalance callback and poll loop drive these, and the unit tests below drive them
//! the way a rebalance, a fenced commit or a re-delivery would.
//!
//! Invariants:
//! - Every change of what is held (an assignment, a revocation, a reseed) moves the
//!   generation; a [`Guard`] that sees the generation move resets to the stored offsets of what
//!   is held now, and its caller drops what it collected before.
//! - A guard accepts an event only of a held partition and only at or after that partition's
//!   next offset, so a batch never holds an event twice, nor one before the stored offset.

use std::collections::HashMap;

/// What is held, with the stored next offsets (`None`: nothing stored yet, start at the
/// beginning), and the generation of that assignment.
#[derive(Debug, Default)]
pub struct Positions {
    generation: u64,
    held: HashMap<i32, Option<i64>>,
}

impl Positions {
    /// Incremented on every change of what is held.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The held partitions with their stored next offsets.
    pub fn held(&self) -> &HashMap<i32, Option<i64>> {
        &self.held
    }

    /// A new assignment of `partitions`, each to start at its offset in `stored` (the sink's
    /// next offsets), or at the beginning. Returns where each is to start.
    pub fn assign(&mut self, partitions: &[i32], stored: &HashMap<i32, i64>) -> Vec<(i32, Option<i64>)> {
        self.held = partitions.iter().map(|&p| (p, stored.get(&p).copied())).collect();
        self.generation += 1;
        partitions.iter().map(|&p| (p, self.held[&p])).collect()
    }

    /// Everything revoked (or lost to a rebalance error).
    pub fn revoke(&mut self) {
        self.held.clear();
        self.generation += 1;
    }

    /// A batch committed: the held partitions' stored offsets moved. Partitions no longer held
    /// are left out.
    pub fn committed(&mut self, offsets: &[(i32, i64)]) {
        for &(partition, next) in offsets {
            if let Some(stored) = self.held.get_mut(&partition) {
                *stored = Some(next);
            }
        }
    }

    /// After a fenced commit: every held partition goes back to `stored` through `seek`; one
    /// that cannot be moved is no longer held (until it is assigned again), and `false` is
    /// returned. The generation moves either way.
    pub fn reseed(&mut self, stored: &HashMap<i32, i64>, mut seek: impl FnMut(i32, Option<i64>) -> bool) -> bool {
        let mut moved = true;
        self.held.retain(|&partition, next| {
            *next = stored.get(&partition).copied();
            let ok = seek(partition, *next);
            moved &= ok;
            ok
        });
        self.generation += 1;
        moved
    }
}

/// The poll loop's side: the next offset accepted per partition, as of one generation.
#[derive(Debug, Default)]
pub struct Guard {
    generation: u64,
    accepted: HashMap<i32, i64>,
}

impl Guard {
    /// A guard as of what `positions` holds now.
    pub fn new(positions: &Positions) -> Self {
        let mut guard = Self::default();
        guard.reset(positions);
        guard
    }

    /// Whether the generation moved since the guard was last in step; if so, it is reset to the
    /// stored offsets of what is held now, and what was collected before must be dropped.
    pub fn changed(&mut self, positions: &Positions) -> bool {
        if positions.generation() == self.generation {
            return false;
        }
        self.reset(positions);
        true
    }

    /// Whether the event at `offset` of `partition` belongs in a batch; if so, the next one
    /// accepted is the one after it.
    pub fn accept(&mut self, partition: i32, offset: i64) -> bool {
        match self.accepted.get_mut(&partition) {
            Some(next) if offset >= *next => {
                *next = offset + 1;
                true
            }
            _ => false,
        }
    }

    /// Accept `partition` from `offset` on (the log start, after an accepted offset jump).
    pub fn rewind(&mut self, partition: i32, offset: i64) {
        self.accepted.insert(partition, offset);
    }

    fn reset(&mut self, positions: &Positions) {
        self.generation = positions.generation();
        self.accepted = positions.held().iter().map(|(&p, next)| (p, next.unwrap_or(i64::MIN))).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(pairs: &[(i32, i64)]) -> HashMap<i32, i64> {
        pairs.iter().copied().collect()
    }

    /// Polls `offsets` of `partition` through the guard; returns those a batch takes.
    fn poll(guard: &mut Guard, partition: i32, offsets: impl IntoIterator<Item = i64>) -> Vec<i64> {
        offsets.into_iter().filter(|&o| guard.accept(partition, o)).collect()
    }

    #[test]
    fn an_assignment_starts_each_partition_at_its_stored_offset_or_the_beginning() {
        let mut positions = Positions::default();
        let mut starts = positions.assign(&[0, 1], &stored(&[(0, 7)]));
        starts.sort_unstable();
        assert_eq!(starts, [(0, Some(7)), (1, None)]);
        let mut guard = Guard::new(&positions);
        assert_eq!(poll(&mut guard, 0, 5..9), [7, 8], "nothing before the stored offset");
        assert_eq!(poll(&mut guard, 1, [0, 1]), [0, 1]);
        assert_eq!(poll(&mut guard, 2, [0]), Vec::<i64>::new(), "a partition not held");
    }

    #[test]
    fn re_deliveries_are_dropped() {
        let mut positions = Positions::default();
        positions.assign(&[0], &stored(&[(0, 10)]));
        let mut guard = Guard::new(&positions);
        assert_eq!(poll(&mut guard, 0, [10, 11, 11, 10, 12]), [10, 11, 12]);
        assert!(!guard.changed(&positions));
    }

    #[test]
    fn a_rebalance_mid_batch_restarts_from_what_is_stored_for_the_new_assignment() {
        let mut positions = Positions::default();
        positions.assign(&[0, 1], &stored(&[(0, 100), (1, 50)]));
        let mut guard = Guard::new(&positions);
        assert_eq!(poll(&mut guard, 0, 100..103), [100, 101, 102]);
        assert_eq!(poll(&mut guard, 1, 50..52), [50, 51]);

        // Revoked, then partition 1 goes to another member that applies up to 60, and this
        // member gets 0 and 2; nothing of the batch was committed.
        positions.revoke();
        assert!(guard.changed(&positions), "the batch collected before must be dropped");
        assert_eq!(poll(&mut guard, 0, [103]), Vec::<i64>::new(), "nothing is held between the two");
        positions.assign(&[0, 2], &stored(&[(0, 100), (1, 60)]));
        assert!(guard.changed(&positions));
        assert_eq!(poll(&mut guard, 0, 100..102), [100, 101], "re-read from the stored offset");
        assert_eq!(poll(&mut guard, 1, [60]), Vec::<i64>::new(), "partition 1 is another member's now");
        assert_eq!(poll(&mut guard, 2, [0]), [0]);
        assert!(!guard.changed(&positions));
    }

    #[test]
    fn commits_move_the_stored_offsets_of_held_partitions_only() {
        let mut positions = Positions::default();
        positions.assign(&[0, 1], &HashMap::new());
        let generation = positions.generation();
        positions.committed(&[(0, 5), (3, 9)]);
        assert_eq!(positions.held(), &HashMap::from([(0, Some(5)), (1, None)]));
        assert_eq!(positions.generation(), generation, "a commit is not an assignment change");
    }

    #[test]
    fn a_fence_moves_back_to_the_stored_offsets_and_drops_what_cannot_be_moved() {
        let mut positions = Positions::default();
        positions.assign(&[0, 1, 2], &stored(&[(0, 10), (1, 10), (2, 10)]));
        let mut guard = Guard::new(&positions);
        assert_eq!(poll(&mut guard, 0, 10..15), [10, 11, 12, 13, 14]);

        // Another member applied partition 0 up to 20 meanwhile; partition 2 cannot be moved.
        let mut seeks = Vec::new();
        let moved = positions.reseed(&stored(&[(0, 20), (1, 10), (2, 10)]), |p, next| {
            seeks.push((p, next));
            p != 2
        });
        seeks.sort_unstable();
        assert_eq!(seeks, [(0, Some(20)), (1, Some(10)), (2, Some(10))]);
        assert!(!moved, "the caller replaces the consumer");
        assert_eq!(positions.held(), &HashMap::from([(0, Some(20)), (1, Some(10))]));
        assert!(guard.changed(&positions));
        assert_eq!(poll(&mut guard, 0, [14, 19, 20]), [20]);
        assert_eq!(poll(&mut guard, 2, [10]), Vec::<i64>::new());
    }

    #[test]
    fn a_rewind_accepts_a_partition_from_the_log_start() {
        let mut positions = Positions::default();
        positions.assign(&[0], &stored(&[(0, 3)]));
        let mut guard = Guard::new(&positions);
        positions.committed(&[(0, 40)]);
        guard.rewind(0, 40);
        assert_eq!(poll(&mut guard, 0, [3, 39, 40, 41]), [40, 41]);
    }
}
