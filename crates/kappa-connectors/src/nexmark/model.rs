//! Event number → event, the Nexmark reference model: of every 50 events the first is a
//! person, the next 3 auctions, the other 46 bids; ids follow from the event number; sellers
//! and bidders are hot (the first or second person of the latest hundred) or drawn from the
//! active persons, a bid's auction is hot (the first of the latest hundred auctions) or drawn
//! from those still in flight, both with a small lead past the latest one, as in the reference.

use kappa_job::plan::nexmark::NexmarkTable;

use super::config::NexmarkConfig;
use super::rng::channel_url;
use super::rng::{CHANNELS, EventRng, FIRST_NAMES, HOT_CHANNELS, LAST_NAMES, US_CITIES, US_STATES};

pub const FIRST_PERSON_ID: i64 = 1000;
pub const FIRST_AUCTION_ID: i64 = 1000;
pub const FIRST_CATEGORY_ID: i64 = 10;
pub const NUM_CATEGORIES: u64 = 5;
/// Of `PROPORTION_TOTAL` consecutive events, this many persons, then auctions, then bids.
pub const PERSON_PROPORTION: u64 = 1;
pub const AUCTION_PROPORTION: u64 = 3;
pub const BID_PROPORTION: u64 = 46;
pub const PROPORTION_TOTAL: u64 = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;
/// A random seller or bidder may be up to this many persons past the latest one, a random
/// auction of a bid up to this many auctions past the latest one (the reference's "leads":
/// such events look as if they came before the person or auction they name).
pub const PERSON_ID_LEAD: u64 = 10;
pub const AUCTION_ID_LEAD: u64 = 10;
/// Hot sellers, bidders and auctions are the first (bidders: second) of each hundred.
pub const HOT_GROUP: u64 = 100;

/// Which table an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    Person,
    Auction,
    Bid,
}

impl From<NexmarkTable> for Table {
    fn from(t: NexmarkTable) -> Self {
        match t {
            NexmarkTable::Person => Table::Person,
            NexmarkTable::Auction => Table::Auction,
            NexmarkTable::Bid => Table::Bid,
        }
    }
}

impl From<Table> for NexmarkTable {
    fn from(t: Table) -> Self {
        match t {
            Table::Person => NexmarkTable::Person,
            Table::Auction => NexmarkTable::Auction,
            Table::Bid => NexmarkTable::Bid,
        }
    }
}

impl Table {
    /// The table of event number `n`.
    pub fn of_event(n: u64) -> Table {
        match n % PROPORTION_TOTAL {
            r if r < PERSON_PROPORTION => Table::Person,
            r if r < PERSON_PROPORTION + AUCTION_PROPORTION => Table::Auction,
            _ => Table::Bid,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub id: i64,
    pub name: String,
    pub email_address: String,
    pub credit_card: String,
    pub city: &'static str,
    pub state: &'static str,
    pub date_time: i64,
    pub extra: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Auction {
    pub id: i64,
    pub item_name: String,
    pub description: String,
    pub initial_bid: i64,
    pub reserve: i64,
    pub date_time: i64,
    pub expires: i64,
    pub seller: i64,
    pub category: i64,
    pub extra: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bid {
    pub auction: i64,
    pub bidder: i64,
    pub price: i64,
    pub channel: String,
    pub url: &'static str,
    pub date_time: i64,
    pub extra: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Person(Person),
    Auction(Auction),
    Bid(Bid),
}

/// Number of persons among events `0..=n` (at least 1: event 0 is a person).
pub fn persons_up_to(n: u64) -> u64 {
    let in_epoch = (n % PROPORTION_TOTAL + 1).min(PERSON_PROPORTION);
    n / PROPORTION_TOTAL * PERSON_PROPORTION + in_epoch
}

/// Number of auctions among events `0..=n`.
pub fn auctions_up_to(n: u64) -> u64 {
    let in_epoch = (n % PROPORTION_TOTAL + 1).saturating_sub(PERSON_PROPORTION);
    n / PROPORTION_TOTAL * AUCTION_PROPORTION + in_epoch.min(AUCTION_PROPORTION)
}

/// The event of number `n` under a validated `config`.
pub fn event(config: &NexmarkConfig, n: u64) -> Event {
    let mut rng = EventRng::for_event(config.seed, n);
    let time = config.event_time_ms(n);
    match Table::of_event(n) {
        Table::Person => Event::Person(person(config, n, time, &mut rng)),
        Table::Auction => Event::Auction(auction(config, n, time, &mut rng)),
        Table::Bid => Event::Bid(bid(config, n, time, &mut rng)),
    }
}

fn person(config: &NexmarkConfig, n: u64, time: i64, rng: &mut EventRng) -> Person {
    let name = format!("{} {}", rng.pick(&FIRST_NAMES), rng.pick(&LAST_NAMES));
    let email_address = format!("{}@{}.com", rng.string(7, ' '), rng.string(5, ' '));
    let credit_card = (0..4)
        .map(|_| format!("{:04}", rng.below(10_000)))
        .collect::<Vec<_>>()
        .join(" ");
    let city = rng.pick(&US_CITIES);
    let state = rng.pick(&US_STATES);
    let size = 8 + name.len() + email_address.len() + credit_card.len() + city.len() + state.len();
    Person {
        id: FIRST_PERSON_ID + (persons_up_to(n) - 1) as i64,
        extra: rng.extra(size, config.avg_person_bytes),
        name,
        email_address,
        credit_card,
        city,
        state,
        date_time: time,
    }
}

fn auction(config: &NexmarkConfig, n: u64, time: i64, rng: &mut EventRng) -> Auction {
    let seller = if rng.hot(config.hot_sellers_ratio) {
        (persons_up_to(n) - 1) / HOT_GROUP * HOT_GROUP
    } else {
        random_person(config, n, rng)
    };
    let category = FIRST_CATEGORY_ID + rng.below(NUM_CATEGORIES) as i64;
    let initial_bid = rng.price();
    let reserve = initial_bid + rng.price();
    // Lengths average the time until `num_in_flight_auctions` more auctions have started.
    let events_ahead =
        u64::from(config.num_in_flight_auctions) * PROPORTION_TOTAL / AUCTION_PROPORTION;
    let horizon_ms = config.event_time_ms(n.saturating_add(events_ahead)) - time;
    let length_ms = 1 + rng.below((2 * horizon_ms).max(1) as u64) as i64;
    let item_name = rng.string(20, ' ');
    let description = rng.string(100, ' ');
    let size = 8 + item_name.len() + description.len() + 5 * 8;
    Auction {
        id: FIRST_AUCTION_ID + (auctions_up_to(n) - 1) as i64,
        extra: rng.extra(size, config.avg_auction_bytes),
        item_name,
        description,
        initial_bid,
        reserve,
        date_time: time,
        expires: time.saturating_add(length_ms),
        seller: FIRST_PERSON_ID + seller as i64,
        category,
    }
}

fn bid(config: &NexmarkConfig, n: u64, time: i64, rng: &mut EventRng) -> Bid {
    // A bid event is never the first of the sequence, so an auction precedes it.
    let last_auction = auctions_up_to(n) - 1;
    let auction = if rng.hot(config.hot_auction_ratio) {
        last_auction / HOT_GROUP * HOT_GROUP
    } else {
        let first = last_auction.saturating_sub(config.num_in_flight_auctions.into());
        first + rng.below(last_auction - first + 1 + AUCTION_ID_LEAD)
    };
    let bidder = if rng.hot(config.hot_bidders_ratio) {
        (persons_up_to(n) - 1) / HOT_GROUP * HOT_GROUP + 1
    } else {
        random_person(config, n, rng)
    };
    let price = rng.price();
    let (channel, url) = if rng.hot(2) {
        let i = rng.below(HOT_CHANNELS.len() as u64);
        (HOT_CHANNELS[i as usize].to_owned(), channel_url(true, i))
    } else {
        let i = rng.below(CHANNELS);
        (format!("channel-{i}"), channel_url(false, i))
    };
    Bid {
        auction: FIRST_AUCTION_ID + auction as i64,
        bidder: FIRST_PERSON_ID + bidder as i64,
        price,
        channel,
        url,
        date_time: time,
        extra: rng.extra(4 * 8, config.avg_bid_bytes),
    }
}

/// A base-0 person id among the latest `num_active_people`, or up to `PERSON_ID_LEAD` past.
fn random_person(config: &NexmarkConfig, n: u64, rng: &mut EventRng) -> u64 {
    let people = persons_up_to(n);
    let active = people.min(config.num_active_people.into());
    people - active + rng.below(active + PERSON_ID_LEAD)
}
