//! The random numbers of the Nexmark generator: one ChaCha8 stream per event, keyed by
//! (seed, event number), so any event can be generated alone; and the text it draws from
//! (names, cities, channels and their URLs, the `extra` padding).

use std::sync::OnceLock;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// Keeps the streams of events, channel URLs and the padding text apart.
#[derive(Clone, Copy)]
enum Domain {
    Event = 1,
    ChannelUrl = 2,
    Padding = 3,
}

/// Shortest string `EventRng::string` makes (before trimming), as in the reference.
const MIN_STRING_LENGTH: u64 = 3;
/// Length of the text `extra` is sliced from.
const PADDING_LEN: usize = 1024 * 1024;
/// Distinct cold channels (`channel-0` … `channel-9999`).
pub(crate) const CHANNELS: u64 = 10_000;
pub(crate) const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];

pub(crate) const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
pub(crate) const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
pub(crate) const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
pub(crate) const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];

/// A ChaCha8 stream whose 256-bit key is (domain, seed, number): distinct inputs, distinct
/// streams, and the same stream on every machine and version of `rand_chacha` 0.9.
pub(crate) struct EventRng(ChaCha8Rng);

impl EventRng {
    /// The random numbers of event number `n` under `seed`.
    pub(crate) fn for_event(seed: u64, n: u64) -> Self {
        Self::keyed(Domain::Event, seed, n)
    }

    fn keyed(domain: Domain, seed: u64, number: u64) -> Self {
        let mut key = [0u8; 32];
        key[0..8].copy_from_slice(&(domain as u64).to_le_bytes());
        key[8..16].copy_from_slice(&seed.to_le_bytes());
        key[16..24].copy_from_slice(&number.to_le_bytes());
        EventRng(ChaCha8Rng::from_seed(key))
    }

    /// Uniform in `0..n` (`n` ≥ 1) by the multiply-shift method; its bias is below 2⁻³².
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.0.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Whether a draw in `0..ratio` is non-zero: probability `1 - 1/ratio` (the reference's
    /// "hot" choice).
    pub(crate) fn hot(&mut self, ratio: u32) -> bool {
        self.below(ratio.into()) > 0
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// A price in cents, log-uniform from $1 to $1 000 000.
    pub(crate) fn price(&mut self) -> i64 {
        (10f64.powf(self.unit() * 6.0) * 100.0).round() as i64
    }

    /// `3 ≤ len < max_len` letters, each `special` with probability 1/13, trimmed of spaces.
    pub(crate) fn string(&mut self, max_len: u64, special: char) -> String {
        let len = MIN_STRING_LENGTH + self.below(max_len - MIN_STRING_LENGTH);
        let text: String = (0..len)
            .map(|_| match self.below(13) {
                0 => special,
                _ => char::from(b'a' + self.below(26) as u8),
            })
            .collect();
        text.trim_matches(' ').to_owned()
    }

    /// Padding that brings a record of `current` bytes to `average` on average: ±20 % around
    /// `average - current`, nothing when the record is already larger.
    pub(crate) fn extra(&mut self, current: usize, average: u32) -> &'static str {
        let Some(wanted) = (average as usize).checked_sub(current) else {
            return "";
        };
        let delta = (wanted as f64 * 0.2).round() as usize;
        let size = wanted - delta + self.below(2 * delta as u64) as usize;
        let text = padding();
        let start = self.below((text.len() - size) as u64) as usize;
        &text[start..start + size]
    }
}

/// 1 MiB of lower-case letters, the same in every process.
fn padding() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let mut rng = EventRng::keyed(Domain::Padding, 0, 0);
        (0..PADDING_LEN)
            .map(|_| char::from(b'a' + rng.below(26) as u8))
            .collect()
    })
}

/// The URL of hot channel `i` (below `HOT_CHANNELS.len()`) or of cold channel `i` (below
/// `CHANNELS`), fixed for every process.
pub(crate) fn channel_url(hot: bool, i: u64) -> &'static str {
    static URLS: OnceLock<(Vec<String>, Vec<String>)> = OnceLock::new();
    let (hot_urls, cold_urls) = URLS.get_or_init(|| {
        let hot_urls = (0..HOT_CHANNELS.len() as u64)
            .map(|i| base_url(&mut EventRng::keyed(Domain::ChannelUrl, 1, i)))
            .collect();
        let cold_urls = (0..CHANNELS)
            .map(|i| {
                let mut rng = EventRng::keyed(Domain::ChannelUrl, 0, i);
                let url = base_url(&mut rng);
                match rng.below(10) {
                    0 => url,
                    _ => format!(
                        "{url}&channel_id={}",
                        (i as i32).reverse_bits().unsigned_abs()
                    ),
                }
            })
            .collect();
        (hot_urls, cold_urls)
    });
    if hot {
        &hot_urls[i as usize]
    } else {
        &cold_urls[i as usize]
    }
}

fn base_url(rng: &mut EventRng) -> String {
    let mut part = || rng.string(5, '_');
    format!(
        "https://www.nexmark.com/{}/{}/{}/item.htm?query=1",
        part(),
        part(),
        part()
    )
}
