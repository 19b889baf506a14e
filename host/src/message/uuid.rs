//! Message UUIDs: who produced a message, when, and what it means for its
//! transaction (Gazette's `message/uuid.go`).
//!
//! Every published message carries an RFC 4122 version-1 UUID that packs three
//! things:
//!
//! - a [`ProducerId`]: 6 random bytes (the v1 "node"), drawn fresh for every
//!   [`Publisher`](super::Publisher), so a new primary never reuses the clocks
//!   of a dead one;
//! - a [`Clock`]: 100 ns ticks since 1582-10-15, shifted left by 4 bits of
//!   sequence. A producer's clocks strictly increase in journal order, which is
//!   what lets readers drop duplicates;
//! - [`Flags`]: `OUTSIDE_TXN` (commits itself), `CONTINUE_TXN` (pending until
//!   acknowledged) or `ACK_TXN` (commits the producer's pending messages up to
//!   its own clock and rolls back the rest).
//!
//! Byte layout (big-endian fields, exactly Gazette's):
//!
//! | bytes | content |
//! |---|---|
//! | 0–3 | `clock >> 4`, low 32 bits (time_low) |
//! | 4–5 | `clock >> 36`, low 16 bits (time_mid) |
//! | 6–7 | `(clock >> 52) & 0x0fff \| 0x1000` (time_hi and version 1) |
//! | 8–9 | `0x8000 \| (clock & 0xf) << 10 \| flags` (variant, sequence, 10 flag bits) |
//! | 10–15 | producer id |
//!
//! ```
//! use weir::message::{build_uuid, parse_uuid, AtomicClock, Flags, ProducerId};
//!
//! let clock = AtomicClock::now();
//! let producer = ProducerId::random();
//! let uuid = build_uuid(producer, clock.tick(), Flags::ContinueTxn);
//! let (p, _c, f) = parse_uuid(&uuid);
//! assert_eq!((p, f), (producer, Flags::ContinueTxn));
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The 6-byte identity of one publisher instance (the UUID's node id).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ProducerId(pub [u8; 6]);

impl ProducerId {
    /// A fresh random id from a cryptographically secure generator, with the
    /// multicast bit set (as RFC 4122 asks of ids that are not MAC addresses).
    pub fn random() -> ProducerId {
        let mut id: [u8; 6] = rand::random();
        id[0] |= 0x01;
        ProducerId(id)
    }

    /// The id packed into the low 48 bits of a `u64` (big-endian order).
    pub fn as_u64(self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }
}

impl fmt::Debug for ProducerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ProducerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A UUID clock: `(100 ns ticks since 1582-10-15) << 4 | 4-bit sequence`.
///
/// Clock 0 means "this message type has no UUID": such messages bypass
/// de-duplication and are delivered as committed (at-least-once).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct Clock(pub u64);

impl Clock {
    /// The clock of a message without a UUID.
    pub const ZERO: Clock = Clock(0);
    /// 100 ns intervals from 1582-10-15 (the Gregorian reform) to 1970-01-01.
    pub const UNIX_EPOCH_OFFSET_100NS: u64 = 122_192_928_000_000_000;
    /// What [`tick`](Self::tick) adds: 1 µs (ten 100 ns ticks, shifted past
    /// the 4 sequence bits). This caps one producer at 1M messages/s before
    /// its clock runs ahead of wall time.
    pub const TICK: u64 = 160;

    /// The clock of `since_epoch` after the Unix epoch, precise to 100 ns,
    /// with sequence 0. Saturates in the (far) year 5236.
    pub fn from_unix(since_epoch: Duration) -> Clock {
        let ticks = u64::try_from(since_epoch.as_nanos() / 100).unwrap_or(u64::MAX);
        let ticks = ticks.saturating_add(Self::UNIX_EPOCH_OFFSET_100NS);
        Clock(ticks.saturating_mul(16))
    }

    /// The clock of a wall-clock time. Times before the Unix epoch clamp to it.
    pub fn from_system_time(time: SystemTime) -> Clock {
        Clock::from_unix(time.duration_since(UNIX_EPOCH).unwrap_or_default())
    }

    /// The time since the Unix epoch that this clock encodes (sequence bits
    /// dropped); zero for clocks before the epoch.
    pub fn to_unix(self) -> Duration {
        let ticks = (self.0 >> 4).saturating_sub(Self::UNIX_EPOCH_OFFSET_100NS);
        Duration::from_nanos(ticks.saturating_mul(100))
    }

    /// The clock one tick (1 µs) later.
    pub fn tick(self) -> Clock {
        Clock(self.0.wrapping_add(Self::TICK))
    }

    /// The 4 sequence bits.
    pub fn sequence(self) -> u8 {
        (self.0 & 0xf) as u8
    }

    /// Whether this is the clock of a message without a UUID.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

/// A clock shared by the publishers of one process: `tick` is atomic, so
/// concurrent publishers never hand out the same value, and `update` only
/// ever moves it forward.
#[derive(Debug, Default)]
pub struct AtomicClock(AtomicU64);

impl AtomicClock {
    /// A clock starting at `clock`.
    pub fn new(clock: Clock) -> AtomicClock {
        AtomicClock(AtomicU64::new(clock.0))
    }

    /// A clock starting at the current wall-clock time.
    pub fn now() -> AtomicClock {
        AtomicClock::new(Clock::from_system_time(SystemTime::now()))
    }

    /// The current value.
    pub fn load(&self) -> Clock {
        Clock(self.0.load(Ordering::Acquire))
    }

    /// Advances the clock to `now` if that is later; never moves it back.
    /// Returns the clock's value afterwards.
    pub fn update(&self, now: SystemTime) -> Clock {
        self.update_to(Clock::from_system_time(now))
    }

    /// Advances the clock to `clock` if that is larger (a monotonic CAS).
    /// Returns the clock's value afterwards.
    pub fn update_to(&self, clock: Clock) -> Clock {
        let prev = self.0.fetch_max(clock.0, Ordering::AcqRel);
        Clock(prev.max(clock.0))
    }

    /// Atomically adds one tick (1 µs) and returns the new value.
    pub fn tick(&self) -> Clock {
        Clock(
            self.0
                .fetch_add(Clock::TICK, Ordering::AcqRel)
                .wrapping_add(Clock::TICK),
        )
    }
}

/// What a message means for its producer's transaction (the UUID's 10 flag
/// bits; Gazette's `Flag_*`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Flags {
    /// Commits itself: delivered as soon as it is read (unless a duplicate).
    OutsideTxn,
    /// Pending until an `AckTxn` of the same producer with a clock at least
    /// as large commits it; rolled back otherwise.
    ContinueTxn,
    /// Commits the producer's pending messages with clocks up to its own and
    /// rolls back the rest. Read-committed readers deliver it too.
    AckTxn,
}

impl Flags {
    /// The 10-bit wire value.
    pub fn bits(self) -> u16 {
        match self {
            Flags::OutsideTxn => 0x0,
            Flags::ContinueTxn => 0x1,
            Flags::AckTxn => 0x2,
        }
    }

    /// Decodes wire flags. Unknown values are logged and treated as
    /// `OutsideTxn`, as Gazette does.
    pub fn from_bits(bits: u16) -> Flags {
        match bits {
            0x0 => Flags::OutsideTxn,
            0x1 => Flags::ContinueTxn,
            0x2 => Flags::AckTxn,
            other => {
                tracing::error!(
                    flags = other,
                    "unexpected UUID flags; treating as OUTSIDE_TXN"
                );
                Flags::OutsideTxn
            }
        }
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flags::OutsideTxn => "OUTSIDE_TXN",
            Flags::ContinueTxn => "CONTINUE_TXN",
            Flags::AckTxn => "ACK_TXN",
        })
    }
}

/// Builds the v1 UUID of a message (byte layout in the module docs).
pub fn build_uuid(producer: ProducerId, clock: Clock, flags: Flags) -> uuid::Uuid {
    let c = clock.0;
    let mut b = [0u8; 16];
    b[0..4].copy_from_slice(&((c >> 4) as u32).to_be_bytes());
    b[4..6].copy_from_slice(&((c >> 36) as u16).to_be_bytes());
    b[6..8].copy_from_slice(&((((c >> 52) & 0x0fff) as u16) | 0x1000).to_be_bytes());
    b[8..10].copy_from_slice(&(0x8000 | (((c & 0xf) as u16) << 10) | flags.bits()).to_be_bytes());
    b[10..16].copy_from_slice(&producer.0);
    uuid::Uuid::from_bytes(b)
}

/// Splits a message UUID into its producer, clock and flags. Any 16 bytes
/// parse (version and variant are not checked, as in Gazette); the nil UUID
/// gives clock 0.
pub fn parse_uuid(uuid: &uuid::Uuid) -> (ProducerId, Clock, Flags) {
    let b = uuid.as_bytes();
    let time_low = u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let time_mid = u64::from(u16::from_be_bytes([b[4], b[5]]));
    // The version nibble lands on bit 64 and falls off.
    let time_hi = u64::from(u16::from_be_bytes([b[6], b[7]]) & 0x0fff);
    let sequence = u64::from((b[8] >> 2) & 0xf);
    let clock = Clock(time_low << 4 | time_mid << 36 | time_hi << 52 | sequence);
    let flags = Flags::from_bits(u16::from_be_bytes([b[8], b[9]]) & 0x3ff);
    let producer = ProducerId([b[10], b[11], b[12], b[13], b[14], b[15]]);
    (producer, clock, flags)
}

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_matches_gazette_byte_for_byte() {
        // Expected bytes computed by hand from the layout table:
        // clock >> 4 = 0x0012_3456_789a_bcde -> time_low 789abcde;
        // clock >> 36 = 0x123456 -> time_mid 3456;
        // clock >> 52 = 0x012 -> time_hi|version 1012;
        // 0x8000 | 0xf << 10 | ACK(2) = 0xbc02.
        let producer = ProducerId([0x01, 0x02, 0x03, 0x04, 0x05, 0x06]);
        let uuid = build_uuid(producer, Clock(0x0123_4567_89ab_cdef), Flags::AckTxn);
        assert_eq!(uuid.to_string(), "789abcde-3456-1012-bc02-010203040506");
        assert_eq!(
            parse_uuid(&uuid),
            (producer, Clock(0x0123_4567_89ab_cdef), Flags::AckTxn)
        );

        // Sequence 0, CONTINUE_TXN, and a clock whose top nibble is set:
        // clock >> 4 low 32 = 0x00000001; >> 36 = 0xf0000000 low 16 = 0x0000;
        // >> 52 = 0xf00 -> 0x1f00; 0x8000 | 1 = 0x8001.
        let producer = ProducerId([0xff; 6]);
        let uuid = build_uuid(producer, Clock(0xf000_0000_0000_0010), Flags::ContinueTxn);
        assert_eq!(uuid.to_string(), "00000001-0000-1f00-8001-ffffffffffff");
        assert_eq!(
            parse_uuid(&uuid),
            (producer, Clock(0xf000_0000_0000_0010), Flags::ContinueTxn)
        );
    }

    #[test]
    fn uuids_are_rfc4122_version_1_with_the_producer_as_node() {
        let producer = ProducerId::random();
        let clock = Clock::from_unix(Duration::new(1_567_304_621, 981_273_734))
            .tick()
            .tick();
        let uuid = build_uuid(producer, clock, Flags::OutsideTxn);
        assert_eq!(uuid.get_version_num(), 1);
        assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(uuid.get_node_id(), Some(producer.0));
        let timestamp = uuid.get_timestamp().map(|t| t.to_gregorian().0);
        assert_eq!(timestamp, Some(clock.0 >> 4));
        // Rounded to 100 ns, plus two ticks of 1 µs.
        assert_eq!(clock.to_unix(), Duration::new(1_567_304_621, 981_275_700));
    }

    #[test]
    fn the_nil_uuid_has_a_zero_clock() {
        let (producer, clock, flags) = parse_uuid(&uuid::Uuid::nil());
        assert_eq!(
            (producer, clock, flags),
            (ProducerId([0; 6]), Clock::ZERO, Flags::OutsideTxn)
        );
        assert!(clock.is_zero());
    }

    #[test]
    fn unknown_flags_are_treated_as_outside_txn() {
        let mut bytes = *build_uuid(ProducerId([1; 6]), Clock(1 << 20), Flags::AckTxn).as_bytes();
        bytes[9] = 0x2a; // flags 0x02a: not one of the three
        let (_, clock, flags) = parse_uuid(&uuid::Uuid::from_bytes(bytes));
        assert_eq!(flags, Flags::OutsideTxn);
        assert_eq!(clock, Clock(1 << 20));
    }

    #[test]
    fn random_producers_have_the_multicast_bit_and_differ() {
        let ids: std::collections::HashSet<ProducerId> =
            (0..1000).map(|_| ProducerId::random()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.0[0] & 1 == 1));
    }

    #[test]
    fn clock_ticks_one_microsecond_and_updates_only_forward() {
        let clock = AtomicClock::new(Clock::ZERO);
        assert_eq!(clock.tick(), Clock(160));
        assert_eq!(clock.tick(), Clock(320));

        let t12 = UNIX_EPOCH + Duration::new(12, 300);
        assert_eq!(clock.update(t12), Clock::from_unix(Duration::new(12, 399)));
        assert_eq!(clock.load().to_unix(), Duration::new(12, 300));
        clock.tick();
        assert_eq!(clock.load().to_unix(), Duration::new(12, 1300));

        // Never backwards.
        clock.update(UNIX_EPOCH + Duration::new(11, 100));
        assert_eq!(clock.load().to_unix(), Duration::new(12, 1300));
        // Forward resets the sequence bits to the new time.
        let later = clock.update(UNIX_EPOCH + Duration::new(12, 5000));
        assert_eq!(later, Clock::from_unix(Duration::new(12, 5000)));
        assert_eq!(later.sequence(), 0);
    }

    #[test]
    fn concurrent_ticks_never_repeat() {
        let clock = std::sync::Arc::new(AtomicClock::now());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let clock = clock.clone();
                std::thread::spawn(move || (0..10_000).map(|_| clock.tick()).collect::<Vec<_>>())
            })
            .collect();
        let mut all = std::collections::HashSet::new();
        for handle in handles {
            for c in handle.join().expect("ticker thread") {
                assert!(all.insert(c), "clock {c:?} handed out twice");
            }
        }
        assert_eq!(all.len(), 40_000);
    }

    fn any_flags() -> impl Strategy<Value = Flags> {
        prop_oneof![
            Just(Flags::OutsideTxn),
            Just(Flags::ContinueTxn),
            Just(Flags::AckTxn)
        ]
    }

    proptest! {
        #[test]
        fn build_then_parse_round_trips(p in any::<[u8; 6]>(), c in any::<u64>(), f in any_flags()) {
            let uuid = build_uuid(ProducerId(p), Clock(c), f);
            prop_assert_eq!(parse_uuid(&uuid), (ProducerId(p), Clock(c), f));
            prop_assert_eq!(uuid.get_version_num(), 1);
        }
    }
}
