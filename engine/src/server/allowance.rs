//! How many bytes of full text one peer may earn: a token bucket over the server's clock.
//!
//! A full text (a reset, or the text of a new session) costs the server a copy of the master
//! per shadow, a reply as large as the document and a stored row; a peer can earn one with a
//! tiny request (any `m_ack` that matches neither shadow). The bucket refills at
//! `Limits::full_text_bytes_per_second` up to twice the document limit, so an honest client
//! (one connect text and a reset now and then) never waits. A full text is always sent when
//! earned — correctness first, so the balance may go below zero — and a peer in debt has its
//! next `client_sync` and `connect` refused with `slow_down` before anything is done: the
//! request is as good as lost, and its client sends it again after its retransmission time.

use crate::config::{Limits, Time};

/// One peer's balance of full-text bytes, kept in thousandths of a byte so that refills at any
/// rate and any check frequency add up exactly (a refill of `rate` bytes a second over `ms`
/// milliseconds is `rate · ms` thousandths: no rounding).
#[derive(Debug, Clone, Copy)]
pub(super) struct Allowance {
    /// Thousandths of bytes that may still be earned; below zero when the last full text
    /// overdrew it.
    balance: i128,
    /// When `balance` was last brought up to date.
    at: Time,
}

impl Allowance {
    /// A full allowance at `now`.
    pub(super) fn full(now: Time, limits: &Limits) -> Allowance {
        Allowance {
            balance: capacity(limits),
            at: now,
        }
    }

    /// Refill up to `now`; `Err(ms)` while in debt, with how long until the debt is repaid.
    pub(super) fn check(&mut self, now: Time, limits: &Limits) -> Result<(), u64> {
        let rate = limits.full_text_bytes_per_second.max(1) as i128;
        let earned = rate.saturating_mul(now.ms_since(self.at) as i128);
        self.balance = self.balance.saturating_add(earned).min(capacity(limits));
        self.at = now;
        if self.balance >= 0 {
            return Ok(());
        }
        let owed = self.balance.unsigned_abs();
        Err(u64::try_from(owed.div_ceil(rate as u128)).unwrap_or(u64::MAX))
    }

    /// Take `bytes` from the balance (it may go below zero).
    pub(super) fn charge(&mut self, bytes: usize) {
        self.balance = self
            .balance
            .saturating_sub((bytes as i128).saturating_mul(1_000));
    }
}

/// The most the balance holds: two full texts of the largest document.
fn capacity(limits: &Limits) -> i128 {
    (limits.max_document_bytes as i128).saturating_mul(2_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(doc: usize, rate: usize) -> Limits {
        let mut l = Limits::DEFAULT.with_document_bytes(doc);
        l.full_text_bytes_per_second = rate;
        l
    }

    #[test]
    fn a_burst_of_two_documents_then_the_rate() {
        let l = limits(1_000, 500);
        let mut a = Allowance::full(Time(0), &l);
        for _ in 0..3 {
            assert_eq!(a.check(Time(0), &l), Ok(()));
            a.charge(1_000);
        }
        // 2,000 − 3,000: 1,000 bytes owed at 500 a second.
        assert_eq!(a.check(Time(0), &l), Err(2_000));
        // Checked every millisecond at a rate below 1,000 bytes a second, it still refills.
        for t in 1..2_000 {
            assert_eq!(a.check(Time(t), &l), Err(2_000 - t));
        }
        assert_eq!(a.check(Time(2_000), &l), Ok(()));
        // Idle for an hour: back to the capacity, not beyond.
        assert_eq!(a.check(Time(3_600_000), &l), Ok(()));
        for _ in 0..3 {
            a.charge(1_000);
        }
        assert!(a.check(Time(3_600_000), &l).is_err());
    }

    #[test]
    fn huge_times_and_rates_do_not_overflow() {
        let l = limits(usize::MAX / 4, usize::MAX);
        let mut a = Allowance::full(Time(0), &l);
        a.charge(usize::MAX);
        a.charge(usize::MAX);
        let _ = a.check(Time(u64::MAX), &l);
        assert_eq!(a.check(Time(u64::MAX), &l), Ok(()));
    }
}
