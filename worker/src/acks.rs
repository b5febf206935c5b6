//! Acknowledging a channel's deliveries together: one `basic.ack` with `multiple` for a run
//! of settled deliveries instead of a frame per lead. On a quorum queue each acknowledgement
//! frame is also an entry of the broker's replicated log, so a batch of 64 leads settled
//! with one frame costs the broker one entry instead of 64.
//!
//! RabbitMQ settles, for `multiple`, every delivery of the channel still outstanding up to
//! the tag, and closes the channel when the tag itself is not outstanding. So
//! [`AckWindow`] sends it only for a prefix of the channel's outstanding deliveries that
//! are all settled here, ending at one it has not settled in any other way; the caller sends
//! the frames in the order they were made. A delivery settled while an earlier one is still
//! in its transaction waits for it, up to a bound ([`AckWindow::new`]); past the bound the
//! waiting ones are acknowledged one by one, so a slow transaction never holds the prefetch
//! window shut.

use std::collections::BTreeMap;

/// An acknowledgement frame to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// `basic.ack` with `multiple`: every outstanding delivery up to this tag.
    UpTo(u64),
    /// `basic.ack` of this delivery alone.
    One(u64),
}

/// The outstanding deliveries of one channel, in tag order.
#[derive(Debug)]
pub struct AckWindow {
    /// Delivery tag → settled here (and not yet acknowledged to the broker).
    outstanding: BTreeMap<u64, bool>,
    /// How many of `outstanding` are settled.
    settled: usize,
    /// Most settled deliveries that wait behind an unsettled one.
    bound: usize,
}

impl AckWindow {
    /// A window whose settled deliveries wait behind an unsettled one, at most `bound` of
    /// them.
    pub fn new(bound: usize) -> Self {
        Self {
            outstanding: BTreeMap::new(),
            settled: 0,
            bound,
        }
    }

    /// A delivery arrived (in tag order, as the channel delivers them).
    pub fn received(&mut self, tag: u64) {
        self.outstanding.insert(tag, false);
    }

    /// The deliveries `tags` are to be acknowledged: the frames that do it now. A tag the
    /// window does not hold is acknowledged on its own.
    pub fn ack(&mut self, tags: impl IntoIterator<Item = u64>) -> Vec<Frame> {
        let mut frames = Vec::new();
        for tag in tags {
            match self.outstanding.get_mut(&tag) {
                Some(settled) if !*settled => {
                    *settled = true;
                    self.settled += 1;
                }
                Some(_) => {}
                None => frames.push(Frame::One(tag)),
            }
        }
        self.release(&mut frames);
        frames
    }

    /// The delivery `tag` was settled another way, already sent (returned to the queue):
    /// the frames this lets through.
    pub fn gone(&mut self, tag: u64) -> Vec<Frame> {
        if self.outstanding.remove(&tag) == Some(true) {
            self.settled -= 1;
        }
        let mut frames = Vec::new();
        self.release(&mut frames);
        frames
    }

    /// Every settled delivery, one by one, whatever waits before it (the session is ending).
    pub fn drain(&mut self) -> Vec<Frame> {
        let frames = self.take_settled();
        self.outstanding.clear();
        frames
    }

    /// How many deliveries are outstanding.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.outstanding.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.outstanding.is_empty()
    }

    fn release(&mut self, frames: &mut Vec<Frame>) {
        let mut last = None;
        while let Some(first) = self.outstanding.first_entry() {
            if !*first.get() {
                break;
            }
            last = Some(*first.key());
            first.remove();
            self.settled -= 1;
        }
        if let Some(tag) = last {
            frames.push(Frame::UpTo(tag));
        }
        if self.settled > self.bound {
            frames.extend(self.take_settled());
        }
    }

    fn take_settled(&mut self) -> Vec<Frame> {
        let mut frames = Vec::with_capacity(self.settled);
        self.outstanding.retain(|tag, settled| {
            if *settled {
                frames.push(Frame::One(*tag));
            }
            !*settled
        });
        self.settled = 0;
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn window(tags: std::ops::RangeInclusive<u64>, bound: usize) -> AckWindow {
        let mut w = AckWindow::new(bound);
        for t in tags {
            w.received(t);
        }
        w
    }

    #[test]
    fn a_settled_prefix_goes_as_one_frame_up_to_its_last_tag() {
        let mut w = window(1..=6, 100);
        assert_eq!(w.ack([1, 2, 3]), vec![Frame::UpTo(3)]);
        assert_eq!(w.len(), 3);
        assert_eq!(w.ack([5]), vec![], "4 is still in its transaction");
        assert_eq!(w.ack([4]), vec![Frame::UpTo(5)]);
        assert_eq!(w.ack([6]), vec![Frame::UpTo(6)]);
        assert!(w.is_empty());
    }

    #[test]
    fn a_batch_finishing_before_an_earlier_one_waits_for_it() {
        let mut w = window(1..=8, 100);
        assert_eq!(w.ack(5..=8), vec![]);
        assert_eq!(w.ack(1..=4), vec![Frame::UpTo(8)]);
    }

    #[test]
    fn a_delivery_returned_to_the_queue_is_never_the_tag_of_a_multiple_ack() {
        let mut w = window(1..=4, 100);
        assert_eq!(w.ack([1, 2, 4]), vec![Frame::UpTo(2)]);
        // 3 was nacked (sent on its own): the run continues past it, and ends at 4.
        assert_eq!(w.gone(3), vec![Frame::UpTo(4)]);
        let mut w = window(1..=3, 100);
        assert_eq!(w.ack([1, 2]), vec![Frame::UpTo(2)]);
        assert_eq!(w.gone(3), vec![], "nothing settled is left to send");
    }

    #[test]
    fn past_the_bound_waiting_deliveries_are_acknowledged_one_by_one() {
        let mut w = window(1..=10, 3);
        assert_eq!(w.ack([3, 4, 5]), vec![]);
        assert_eq!(
            w.ack([6]),
            vec![Frame::One(3), Frame::One(4), Frame::One(5), Frame::One(6)]
        );
        // 1 and 2 are still outstanding; 7 goes with them once they are settled (3 to 6 are
        // no longer outstanding at the broker).
        assert_eq!(w.ack([7]), vec![]);
        assert_eq!(w.ack([1, 2]), vec![Frame::UpTo(7)]);
        assert_eq!(w.len(), 3);
    }

    #[test]
    fn unknown_tags_are_acknowledged_alone_and_draining_sends_every_settled_one() {
        let mut w = window(1..=4, 100);
        assert_eq!(w.ack([9]), vec![Frame::One(9)]);
        assert_eq!(w.ack([2, 4]), vec![]);
        assert_eq!(w.drain(), vec![Frame::One(2), Frame::One(4)]);
        assert!(w.is_empty());
    }

    /// The broker's side: outstanding tags, and what each frame settles (an error when a
    /// frame names a tag that is not outstanding, which closes the channel).
    fn apply(outstanding: &mut std::collections::BTreeSet<u64>, f: Frame) -> Result<(), u64> {
        match f {
            Frame::One(t) => outstanding.remove(&t).then_some(()).ok_or(t),
            Frame::UpTo(t) => {
                if !outstanding.contains(&t) {
                    return Err(t);
                }
                outstanding.retain(|x| *x > t);
                Ok(())
            }
        }
    }

    proptest! {
        /// Whatever the order in which deliveries are settled (acknowledged or returned), every
        /// frame is valid for the broker, no delivery is acknowledged before it is settled,
        /// and once all are settled and the window drained none is outstanding.
        #[test]
        fn frames_settle_exactly_the_settled_deliveries(
            n in 1u64..60,
            order in Just((1..=60).collect::<Vec<u64>>()).prop_shuffle(),
            returned in proptest::collection::vec(any::<bool>(), 60),
            bound in 0usize..20,
            chunk in 1usize..8,
        ) {
            let mut w = window(1..=n, bound);
            let mut broker: std::collections::BTreeSet<u64> = (1..=n).collect();
            let mut settled = std::collections::BTreeSet::new();
            let order: Vec<u64> = order.into_iter().filter(|t| *t <= n).collect();
            for part in order.chunks(chunk) {
                let mut acks = Vec::new();
                for &t in part {
                    settled.insert(t);
                    if returned[t as usize - 1] {
                        // A nack is sent first, then the window hears of it.
                        prop_assert!(broker.remove(&t));
                        for f in w.gone(t) {
                            prop_assert_eq!(apply(&mut broker, f), Ok(()));
                        }
                    } else {
                        acks.push(t);
                    }
                }
                for f in w.ack(acks) {
                    prop_assert_eq!(apply(&mut broker, f), Ok(()));
                }
                for t in 1..=n {
                    if !broker.contains(&t) {
                        prop_assert!(settled.contains(&t), "{} acknowledged unsettled", t);
                    }
                }
            }
            for f in w.drain() {
                prop_assert_eq!(apply(&mut broker, f), Ok(()));
            }
            prop_assert!(broker.is_empty(), "left outstanding: {:?}", broker);
        }
    }
}
