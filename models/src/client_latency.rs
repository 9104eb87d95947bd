//! Each client's latency apart, when asked for (`--client-latency`): the
//! fairness of a server past its knee is in whether some clients' tails
//! grow while others' stay short, which one histogram for all hides.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use common::latency::LATENCY_MAX_NS;

/// Most clients given a histogram of their own per recorder: at about
/// 3 KiB each, a flood of client ids costs at most 3 MiB a recorder; frames
/// of further ids are in the server's latency but in no client's.
pub const MAX_CLIENT_HISTOGRAMS: usize = 1024;

/// A client's latency histogram: 1 us to [`LATENCY_MAX_NS`] at 1
/// significant digit (a p99 within 10%, a few KiB per client, since every
/// worker of a pool keeps one per client).
pub fn new_client_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, LATENCY_MAX_NS, 1).expect("static bounds are valid")
}

/// Measured frames' latency per client id, when on.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ClientLatency {
    /// Whether frames are recorded per client.
    pub on: bool,
    /// Latency per client id, ns.
    #[serde(with = "by_client")]
    pub clients: BTreeMap<u32, Histogram<u64>>,
}

impl ClientLatency {
    /// Off, or on and empty.
    pub fn new(on: bool) -> Self {
        ClientLatency {
            on,
            clients: BTreeMap::new(),
        }
    }

    /// Records a latency of `ns` for `client`, when on.
    #[inline]
    pub fn record(&mut self, client: u32, ns: u64) {
        if !self.on {
            return;
        }
        let room = self.clients.len() < MAX_CLIENT_HISTOGRAMS;
        match self.clients.entry(client) {
            Entry::Occupied(e) => e.into_mut().saturating_record(ns),
            Entry::Vacant(e) if room => e.insert(new_client_histogram()).saturating_record(ns),
            Entry::Vacant(_) => {}
        }
    }

    /// Adds `o` into `self` (on if either is).
    pub fn merge(&mut self, o: &ClientLatency) {
        self.on |= o.on;
        for (&id, h) in &o.clients {
            let room = self.clients.len() < MAX_CLIENT_HISTOGRAMS;
            match self.clients.entry(id) {
                Entry::Occupied(e) => e.into_mut().add(h).expect("histograms share bounds"),
                Entry::Vacant(e) if room => {
                    e.insert(h.clone());
                }
                Entry::Vacant(_) => {}
            }
        }
    }

    /// `client`'s p99, ns (`None`: off, or no measured frame of it).
    pub fn p99_ns(&self, client: u32) -> Option<u64> {
        self.clients
            .get(&client)
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(0.99))
    }
}

/// Serde for the histograms: a map of client id to base64 (HDR V2).
mod by_client {
    use std::collections::BTreeMap;

    use common::latency::hdr_base64::{decode, encode};
    use hdrhistogram::Histogram;
    use serde::{de::Error as _, ser::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<u32, Histogram<u64>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut out = BTreeMap::new();
        for (&id, h) in m {
            out.insert(id, encode(h).map_err(S::Error::custom)?);
        }
        s.collect_map(out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<u32, Histogram<u64>>, D::Error> {
        BTreeMap::<u32, String>::deserialize(d)?
            .into_iter()
            .map(|(id, s)| Ok((id, decode(&s).map_err(D::Error::custom)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_records_nothing_and_on_keeps_each_client_apart() {
        let mut off = ClientLatency::new(false);
        off.record(1, 5_000);
        assert!(off.clients.is_empty());
        let mut a = ClientLatency::new(true);
        for i in 0..100 {
            a.record(1, 10_000);
            a.record(2, if i == 0 { 900_000 } else { 20_000 });
        }
        let within = |got: Option<u64>, want: u64| {
            let got = got.unwrap() as f64;
            (got - want as f64).abs() <= want as f64 * 0.1
        };
        assert!(within(a.p99_ns(1), 10_000));
        assert!(within(a.p99_ns(2), 20_000));
        assert_eq!(a.p99_ns(3), None);
        // Merging adds, and a round trip through JSON keeps every count.
        let mut b = ClientLatency::new(false);
        b.merge(&a);
        b.merge(&a);
        assert!(b.on);
        assert_eq!(b.clients[&1].len(), 200);
        let json = serde_json::to_string(&b).unwrap();
        let back: ClientLatency = serde_json::from_str(&json).unwrap();
        assert_eq!(back.clients, b.clients);
    }

    #[test]
    fn a_flood_of_client_ids_stops_at_the_cap() {
        let mut a = ClientLatency::new(true);
        for id in 0..(MAX_CLIENT_HISTOGRAMS as u32 + 10) {
            a.record(id, 1_000);
        }
        assert_eq!(a.clients.len(), MAX_CLIENT_HISTOGRAMS);
        let mut b = ClientLatency::new(true);
        b.record(u32::MAX, 1_000);
        b.merge(&a);
        assert_eq!(b.clients.len(), MAX_CLIENT_HISTOGRAMS);
    }
}
