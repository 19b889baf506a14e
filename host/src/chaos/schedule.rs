//! The seeded fault schedule: every fault of a run, with its time, kind,
//! target and parameters, drawn up front from one seed.
//!
//! Drawing everything before the run starts is what makes a seed a replay:
//! the processes' timing differs from run to run, but the same seed, duration,
//! spacing and topology always give the same list of `(time, fault, target)`.
//! The generator is a self-contained SplitMix64 rather than `rand`'s
//! `StdRng`, whose stream may change between `rand` releases: a seed printed
//! by an old CI run must still replay its schedule.
//!
//! How a schedule is drawn:
//! 1. **Slots.** The first fault comes [`ScheduleConfig::warmup`] plus one
//!    gap after the start; every later one a gap after the previous; each
//!    gap is drawn uniformly from [`ScheduleConfig::every`]. Slots stop
//!    before [`ScheduleConfig::duration`].
//! 2. **Kinds.** The mandatory kills (at least
//!    [`ScheduleConfig::min_consumer_kills`] of the consumer host and
//!    [`ScheduleConfig::min_broker_kills`] of the broker) fill slots first;
//!    the remaining slots draw from [`WEIGHTS`]; then the kinds are shuffled
//!    over the slots. A duration too short to hold the mandatory kills at the
//!    requested spacing is an error, never a silently weaker run.
//! 3. **Parameters.** Each kill or graceful stop waits U(0,
//!    [`ScheduleConfig::max_restart_delay`]) before the restart; each pause
//!    lasts U([`ScheduleConfig::pause`]); each [`Fault::DiskDamage`] draws
//!    its restart wait, the chunk partition whose spool it tears, where the
//!    torn record is cut and which bit of the canary it flips, so the seed
//!    replays the file surgery too.
//!
//! Adding a kind (as `damage-broker` was) changes the draws of every seed:
//! a seed replays its schedule within one version of this table.

use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use serde::Serialize;

use crate::limits;

/// How the servers are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Topology {
    /// `weir serve --role broker` and `weir serve --role consumer`.
    Split,
    /// One `weir serve` running both.
    Whole,
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Topology::Split => "split",
            Topology::Whole => "whole",
        })
    }
}

/// The process a fault hits. In the whole topology the broker and the
/// consumer host are one process, which both targets name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The journal broker.
    Broker,
    /// The consumer host (the summer shards).
    Consumer,
    /// The chunker (`weir stream-sum --streams -1`).
    Chunker,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Broker => "broker",
            Target::Consumer => "consumer",
            Target::Chunker => "chunker",
        })
    }
}

/// One fault and its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Fault {
    /// SIGKILL, then restart on the same data directory and port.
    Kill {
        /// The process.
        target: Target,
        /// Time between the kill and the restart.
        #[serde(with = "millis")]
        restart_after: Duration,
    },
    /// SIGTERM (graceful stop), then restart.
    Terminate {
        /// The process.
        target: Target,
        /// Time between the exit and the restart.
        #[serde(with = "millis")]
        restart_after: Duration,
    },
    /// SIGSTOP, then SIGCONT after a while.
    Pause {
        /// The process.
        target: Target,
        /// How long it stays stopped.
        #[serde(with = "millis")]
        paused_for: Duration,
    },
    /// Pause the consumer host, hand its shards to a new consumer host,
    /// resume the old one and check that it was fenced (split topology).
    Takeover,
    /// SIGKILL the broker and damage its data directory while it is down
    /// (see the `disk` module): a torn write at the end of a chunk
    /// partition's spool, which the restart must cut off, and a flipped bit
    /// in a closed fragment of a canary journal written just before, which
    /// must be reported as corruption and never served.
    DiskDamage {
        /// Time between the kill and the restart (the surgery happens
        /// first).
        #[serde(with = "millis")]
        restart_after: Duration,
        /// The chunk partition (`part-NNN`) whose spool gets the torn write.
        partition: u32,
        /// Where the torn record is cut: this many thousandths of it are
        /// written (1–999).
        tear_permille: u16,
        /// Which byte of the canary's closed fragments is damaged: this many
        /// thousandths into their bytes, in journal order (0–999).
        flip_permille: u16,
        /// Which bit of that byte is flipped (0–7).
        flip_bit: u8,
    },
}

impl Fault {
    /// The fault's kind and target as one short name, e.g. `kill-consumer`
    /// (the key of the report's counts).
    pub fn name(&self) -> String {
        match self {
            Fault::Kill { target, .. } => format!("kill-{target}"),
            Fault::Terminate { target, .. } => format!("terminate-{target}"),
            Fault::Pause { target, .. } => format!("pause-{target}"),
            Fault::Takeover => "takeover-consumer".to_string(),
            Fault::DiskDamage { .. } => "damage-broker".to_string(),
        }
    }

    /// Whether the fault SIGKILLs the process hosting `target` itself (a
    /// disk-damage fault is a broker kill too).
    fn kills(&self) -> Option<Target> {
        match *self {
            Fault::Kill { target, .. } => Some(target),
            Fault::DiskDamage { .. } => Some(Target::Broker),
            _ => None,
        }
    }

    /// The process the fault hits.
    pub fn target(&self) -> Target {
        match self {
            Fault::Kill { target, .. }
            | Fault::Terminate { target, .. }
            | Fault::Pause { target, .. } => *target,
            Fault::Takeover => Target::Consumer,
            Fault::DiskDamage { .. } => Target::Broker,
        }
    }
}

/// A fault at its time, counted from the start of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PlannedFault {
    /// When, from the start of the run.
    #[serde(rename = "at_ms", with = "millis")]
    pub at: Duration,
    /// What.
    #[serde(flatten)]
    pub fault: Fault,
}

/// A fault kind without parameters, for drawing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// [`Fault::Kill`] of a target.
    Kill(Target),
    /// [`Fault::Terminate`] of a target.
    Terminate(Target),
    /// [`Fault::Pause`] of a target.
    Pause(Target),
    /// [`Fault::Takeover`].
    Takeover,
    /// [`Fault::DiskDamage`].
    DiskDamage,
}

/// Relative weights of the kinds that fill the slots left after the
/// mandatory kills. Kills dominate (they are what the run is for); a
/// chunker kill is rare because each one abandons its open streams.
pub const WEIGHTS: &[(Kind, u32)] = &[
    (Kind::Kill(Target::Consumer), 3),
    (Kind::Kill(Target::Broker), 2),
    (Kind::Pause(Target::Consumer), 3),
    (Kind::Terminate(Target::Consumer), 1),
    (Kind::Terminate(Target::Broker), 1),
    (Kind::Kill(Target::Chunker), 1),
    (Kind::Takeover, 2),
    (Kind::DiskDamage, 2),
];

/// What a schedule is drawn from.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleConfig {
    /// The seed.
    pub seed: u64,
    /// The run's length; every fault comes before it.
    pub duration: Duration,
    /// Quiet time at the start, before the first gap.
    pub warmup: Duration,
    /// Gap between two faults (and before the first, after the warm-up).
    pub every: RangeInclusive<Duration>,
    /// How the servers are laid out.
    pub topology: Topology,
    /// Whether [`Fault::Takeover`] may be drawn (split topology only).
    pub takeover: bool,
    /// Whether [`Fault::DiskDamage`] may be drawn.
    pub disk_damage: bool,
    /// Chunk partitions of the run (a disk-damage fault picks one).
    pub partitions: u32,
    /// Consumer-host kills the schedule holds at least.
    pub min_consumer_kills: u32,
    /// Broker kills the schedule holds at least.
    pub min_broker_kills: u32,
    /// Longest wait before a restart.
    pub max_restart_delay: Duration,
    /// Length of a pause.
    pub pause: RangeInclusive<Duration>,
}

impl ScheduleConfig {
    /// The defaults of [`limits`] for `seed` and `duration`.
    pub fn new(seed: u64, duration: Duration) -> Self {
        ScheduleConfig {
            seed,
            duration,
            warmup: Duration::from_secs(limits::CHAOS_FAULT_WARMUP_SECS),
            every: Duration::from_secs(limits::CHAOS_DEFAULT_FAULT_GAP_MIN_SECS)
                ..=Duration::from_secs(limits::CHAOS_DEFAULT_FAULT_GAP_MAX_SECS),
            topology: Topology::Split,
            takeover: true,
            disk_damage: true,
            partitions: limits::CHAOS_DEFAULT_PARTITIONS,
            min_consumer_kills: limits::CHAOS_MIN_CONSUMER_KILLS,
            min_broker_kills: limits::CHAOS_MIN_BROKER_KILLS,
            max_restart_delay: Duration::from_millis(limits::CHAOS_MAX_RESTART_DELAY_MS),
            pause: Duration::from_millis(limits::CHAOS_PAUSE_MIN_MS)
                ..=Duration::from_millis(limits::CHAOS_PAUSE_MAX_MS),
        }
    }
}

/// Why no schedule could be drawn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// A run needs at least one chunk partition.
    #[error("a run needs at least one chunk partition")]
    NoPartitions,
    /// The gap range is empty or starts at zero.
    #[error("the fault spacing {min:?}..{max:?} is empty or starts at zero")]
    BadSpacing {
        /// Its lower end.
        min: Duration,
        /// Its upper end.
        max: Duration,
    },
    /// The run is too short for the mandatory kills at this spacing.
    #[error(
        "{duration:?} at a fault every {min:?}..{max:?} holds {slots} faults, \
         fewer than the {needed} mandatory kills: run longer or space faults closer"
    )]
    TooShort {
        /// The run's length.
        duration: Duration,
        /// The spacing's lower end.
        min: Duration,
        /// The spacing's upper end.
        max: Duration,
        /// The slots drawn.
        slots: usize,
        /// The mandatory kills.
        needed: usize,
    },
}

/// A drawn schedule: faults in time order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Schedule {
    /// The seed it was drawn from.
    pub seed: u64,
    /// The faults, by time.
    pub faults: Vec<PlannedFault>,
}

impl Schedule {
    /// Draws the schedule of `config` (see the module docs).
    pub fn draw(config: &ScheduleConfig) -> Result<Schedule, ScheduleError> {
        let (min, max) = (*config.every.start(), *config.every.end());
        if min.is_zero() || min > max {
            return Err(ScheduleError::BadSpacing { min, max });
        }
        if config.partitions == 0 {
            return Err(ScheduleError::NoPartitions);
        }
        let mut rng = SplitMix64::new(config.seed);

        let mut slots = Vec::new();
        let mut at = config.warmup;
        loop {
            at += rng.duration(&config.every);
            if at >= config.duration {
                break;
            }
            slots.push(at);
        }

        let mut kinds = Vec::with_capacity(slots.len());
        kinds.extend((0..config.min_consumer_kills).map(|_| Kind::Kill(Target::Consumer)));
        kinds.extend((0..config.min_broker_kills).map(|_| Kind::Kill(Target::Broker)));
        if kinds.len() > slots.len() {
            return Err(ScheduleError::TooShort {
                duration: config.duration,
                min,
                max,
                slots: slots.len(),
                needed: kinds.len(),
            });
        }
        let allowed: Vec<(Kind, u32)> = WEIGHTS
            .iter()
            .copied()
            .filter(|(kind, _)| match kind {
                Kind::Takeover => config.takeover && config.topology == Topology::Split,
                Kind::DiskDamage => config.disk_damage,
                _ => true,
            })
            .collect();
        while kinds.len() < slots.len() {
            kinds.push(rng.weighted(&allowed));
        }
        rng.shuffle(&mut kinds);

        let faults = slots
            .into_iter()
            .zip(kinds)
            .map(|(at, kind)| PlannedFault {
                at,
                fault: match kind {
                    Kind::Kill(target) => Fault::Kill {
                        target,
                        restart_after: rng.duration(&(Duration::ZERO..=config.max_restart_delay)),
                    },
                    Kind::Terminate(target) => Fault::Terminate {
                        target,
                        restart_after: rng.duration(&(Duration::ZERO..=config.max_restart_delay)),
                    },
                    Kind::Pause(target) => Fault::Pause {
                        target,
                        paused_for: rng.duration(&config.pause),
                    },
                    Kind::Takeover => Fault::Takeover,
                    Kind::DiskDamage => Fault::DiskDamage {
                        restart_after: rng.duration(&(Duration::ZERO..=config.max_restart_delay)),
                        partition: rng.below(u64::from(config.partitions)) as u32,
                        tear_permille: 1 + rng.below(999) as u16,
                        flip_permille: rng.below(1000) as u16,
                        flip_bit: rng.below(8) as u8,
                    },
                },
            })
            .collect();
        Ok(Schedule {
            seed: config.seed,
            faults,
        })
    }

    /// How many faults kill (SIGKILL) a process hosting `target`, a
    /// disk-damage fault counting as a broker kill: in the whole topology a
    /// kill of either server target hits both.
    pub fn kills_of(&self, target: Target, topology: Topology) -> usize {
        self.faults
            .iter()
            .filter(|planned| match planned.fault.kills() {
                Some(hit) => {
                    hit == target
                        || (topology == Topology::Whole
                            && hit != Target::Chunker
                            && target != Target::Chunker)
                }
                None => false,
            })
            .count()
    }

    /// How many faults of each name the schedule holds.
    pub fn counts(&self) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for planned in &self.faults {
            *counts.entry(planned.fault.name()).or_insert(0) += 1;
        }
        counts
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and stable forever.
#[derive(Debug, Clone)]
struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound` > 0), by rejection so no value is
    /// favoured.
    fn below(&mut self, bound: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % bound;
        loop {
            let value = self.next();
            if value < zone {
                return value % bound;
            }
        }
    }

    /// Uniform in `range`, at millisecond resolution.
    fn duration(&mut self, range: &RangeInclusive<Duration>) -> Duration {
        let low = range.start().as_millis() as u64;
        let high = (range.end().as_millis() as u64).max(low);
        Duration::from_millis(low + self.below(high - low + 1))
    }

    fn weighted<T: Copy>(&mut self, table: &[(T, u32)]) -> T {
        let total: u64 = table.iter().map(|(_, weight)| u64::from(*weight)).sum();
        let mut pick = self.below(total.max(1));
        for (item, weight) in table {
            if pick < u64::from(*weight) {
                return *item;
            }
            pick -= u64::from(*weight);
        }
        table[0].0
    }

    /// Fisher–Yates.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// Durations as whole milliseconds in the JSON report.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::Serializer;

    /// Serializes `duration` as milliseconds.
    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(duration.as_millis() as u64)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn short(seed: u64) -> ScheduleConfig {
        ScheduleConfig::new(seed, Duration::from_secs(180))
    }

    #[test]
    fn the_same_seed_draws_the_same_schedule_and_another_seed_does_not() {
        let a = Schedule::draw(&short(42)).unwrap();
        let b = Schedule::draw(&short(42)).unwrap();
        let c = Schedule::draw(&short(43)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn a_pinned_seed_keeps_its_schedule_across_releases() {
        // A seed printed by an old run must replay the same faults.
        let first: Vec<(u128, String)> = Schedule::draw(&short(1))
            .unwrap()
            .faults
            .iter()
            .take(3)
            .map(|planned| (planned.at.as_millis(), planned.fault.name()))
            .collect();
        let expected: Vec<(u128, String)> = vec![
            (21_004, "kill-chunker".to_string()),
            (39_122, "kill-consumer".to_string()),
            (54_278, "kill-consumer".to_string()),
        ];
        assert_eq!(first, expected);
        assert_eq!(SplitMix64::new(1).next(), 0x910a_2dec_8902_5cc1);
        // The file surgery replays too.
        let damage = Schedule::draw(&short(1))
            .unwrap()
            .faults
            .into_iter()
            .find(|planned| matches!(planned.fault, Fault::DiskDamage { .. }));
        assert_eq!(
            damage,
            Some(PlannedFault {
                at: Duration::from_millis(122_777),
                fault: Fault::DiskDamage {
                    restart_after: Duration::from_millis(2_052),
                    partition: 0,
                    tear_permille: 10,
                    flip_permille: 93,
                    flip_bit: 4,
                },
            })
        );
    }

    #[test]
    fn every_short_run_holds_the_mandatory_kills() {
        for seed in 0..500 {
            let schedule = Schedule::draw(&short(seed)).unwrap();
            assert!(
                schedule.kills_of(Target::Consumer, Topology::Split) >= 5,
                "seed {seed}: {schedule:?}"
            );
            assert!(
                schedule.kills_of(Target::Broker, Topology::Split) >= 2,
                "seed {seed}: {schedule:?}"
            );
        }
    }

    #[test]
    fn faults_are_spaced_as_asked_and_end_before_the_duration() {
        let mut config = ScheduleConfig::new(7, Duration::from_secs(600));
        config.every = Duration::from_secs(15)..=Duration::from_secs(30);
        for seed in 0..200 {
            config.seed = seed;
            let schedule = Schedule::draw(&config).unwrap();
            let mut previous = config.warmup;
            for planned in &schedule.faults {
                let gap = planned.at - previous;
                assert!(
                    (Duration::from_secs(15)..=Duration::from_secs(30)).contains(&gap),
                    "seed {seed}: a gap of {gap:?}"
                );
                assert!(planned.at < config.duration);
                previous = planned.at;
            }
            // 600 s less the warm-up at one fault per 30 s at most.
            assert!(schedule.faults.len() >= 19, "seed {seed}");
        }
    }

    #[test]
    fn fault_parameters_stay_in_their_ranges() {
        for seed in 0..200 {
            for planned in Schedule::draw(&short(seed)).unwrap().faults {
                match planned.fault {
                    Fault::Kill { restart_after, .. } | Fault::Terminate { restart_after, .. } => {
                        assert!(restart_after <= Duration::from_secs(3))
                    }
                    Fault::Pause { paused_for, .. } => assert!(
                        (Duration::from_secs(2)..=Duration::from_secs(5)).contains(&paused_for)
                    ),
                    Fault::Takeover => {}
                    Fault::DiskDamage {
                        restart_after,
                        partition,
                        tear_permille,
                        flip_permille,
                        flip_bit,
                    } => {
                        assert!(restart_after <= Duration::from_secs(3));
                        assert!(partition < limits::CHAOS_DEFAULT_PARTITIONS);
                        assert!((1..=999).contains(&tear_permille));
                        assert!(flip_permille <= 999);
                        assert!(flip_bit <= 7);
                    }
                }
            }
        }
    }

    #[test]
    fn disk_damage_is_drawn_counted_as_a_broker_kill_and_can_be_left_out() {
        let mut drawn = 0;
        for seed in 0..200 {
            let schedule = Schedule::draw(&short(seed)).unwrap();
            let damages = schedule
                .faults
                .iter()
                .filter(|p| matches!(p.fault, Fault::DiskDamage { .. }))
                .count();
            let kills = schedule
                .faults
                .iter()
                .filter(|p| {
                    matches!(
                        p.fault,
                        Fault::Kill {
                            target: Target::Broker,
                            ..
                        }
                    )
                })
                .count();
            assert_eq!(
                schedule.kills_of(Target::Broker, Topology::Split),
                kills + damages
            );
            drawn += damages;
        }
        assert!(drawn > 50, "disk damage is drawn: {drawn} in 200 schedules");

        let mut config = short(0);
        config.disk_damage = false;
        for seed in 0..200 {
            config.seed = seed;
            let schedule = Schedule::draw(&config).unwrap();
            assert!(
                !schedule
                    .faults
                    .iter()
                    .any(|p| matches!(p.fault, Fault::DiskDamage { .. }))
            );
        }
    }

    #[test]
    fn a_disk_damage_picks_one_of_the_run_s_partitions() {
        let mut config = short(0);
        config.partitions = 1;
        for seed in 0..100 {
            config.seed = seed;
            for planned in Schedule::draw(&config).unwrap().faults {
                if let Fault::DiskDamage { partition, .. } = planned.fault {
                    assert_eq!(partition, 0);
                }
            }
        }
        config.partitions = 0;
        assert_eq!(Schedule::draw(&config), Err(ScheduleError::NoPartitions));
    }

    #[test]
    fn a_run_too_short_for_the_mandatory_kills_is_refused() {
        let err = Schedule::draw(&ScheduleConfig::new(1, Duration::from_secs(60))).unwrap_err();
        assert!(
            matches!(err, ScheduleError::TooShort { needed: 7, .. }),
            "{err}"
        );
    }

    #[test]
    fn the_whole_topology_never_draws_a_takeover_and_counts_server_kills_for_both() {
        let mut config = short(0);
        config.topology = Topology::Whole;
        for seed in 0..200 {
            config.seed = seed;
            let schedule = Schedule::draw(&config).unwrap();
            assert!(!schedule.faults.iter().any(|p| p.fault == Fault::Takeover));
            let server_kills = schedule
                .faults
                .iter()
                .filter(|p| {
                    matches!(p.fault, Fault::Kill { target, .. } if target != Target::Chunker)
                        || matches!(p.fault, Fault::DiskDamage { .. })
                })
                .count();
            assert_eq!(
                schedule.kills_of(Target::Broker, Topology::Whole),
                server_kills
            );
        }
    }

    #[test]
    fn an_empty_spacing_is_refused() {
        let mut config = short(0);
        config.every = Duration::ZERO..=Duration::from_secs(1);
        assert!(matches!(
            Schedule::draw(&config),
            Err(ScheduleError::BadSpacing { .. })
        ));
    }
}
